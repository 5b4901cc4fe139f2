"""A person's decisions on the client review list, applied by the next client sync.

DESIGN.md "Client decisions": a person's decision wins over every rule and is applied by the next run. The review
page stores decisions (`StateStore.record_review_decision`); each client-sync run applies the pending ones, oldest
first, once both client bases are read and before the matcher runs, so a decision is weighed against the two
systems as they are now, and what it changes is merged and created in the same run.

| decision  | applied as                                                               | refused when                 |
|-----------|--------------------------------------------------------------------------|------------------------------|
| link      | the two records are linked (evidence `person`); the run's field merge    | either is linked to another  |
|           | takes them as a pair at once (empty fields filled, CRM client stamped)   | client; either was deleted   |
| different | the pair is told apart: the matcher's pairing of them is undone, neither | they are linked to each other|
|           | holds the other back as a look-alike, a NIP or e-mail they share is not  | (a linked pair stays linked) |
|           | a claim key of either; each one without a link is then created on the    |                              |
|           | other side by the usual path (`client_creation`, under a claim)          |                              |
| ignore    | the entry is resolved and stays resolved while later runs find the same  | never                        |
|           | evidence (`review_evidence`: reason, records named, candidates); a       |                              |
|           | different finding opens it again; nothing is written anywhere            |                              |

`link` and `different` need both a Fakturownia and a CRM id (`PAIR_DECISIONS`; the page offers them only then). A
later decision on the same subject supersedes one not applied yet (marked as superseded, nothing done). Applied
decisions keep acting on later runs (`applied_review_decisions`): every `different` keeps its pair apart (deciding
"different" on each candidate an entry shows in turn works through an ambiguous entry), an `ignore` keeps its
entry closed.

Exactly once: a decision is acted on first and marked applied after; only the first run to mark it counts
(`mark_review_decision_applied`), and acting is idempotent: a link already between the two records is that
decision done, an ignore resolves an entry again, and the creates of a `different` pair go through
`claims.create_under_claim`, which finds what an earlier attempt made. So a run that dies between acting and
marking, or two runs that overlap, never link or create twice. `link` and `ignore` are marked at once;
`different` after the run's creates, so that its outcome says what became of each record (while one of its creates
is in flight in another run, or got no answer, it stays pending for the run that settles it). A refusal is a
decision applied with its reason as the outcome; the entry stays open for another decision.

Told apart means two companies: a record together with its linked partner (a copy the sync made) is one company,
so the copies of two records told apart never resemble each other either (`ClientBases.told_apart`). An ignored
entry changes nothing: a record held for review stays held, only no longer listed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fakturownia_sync.client_bases import MIRROR_FIELDS, ClientBases, trim
from fakturownia_sync.client_creation import ClientCreation
from fakturownia_sync.client_merge import CRM, FAKTUROWNIA
from fakturownia_sync.client_review_builder import ReviewBuilder
from fakturownia_sync.errors import ApiAuthError, ApiNotFound, ApiUnavailable
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.redaction import redact
from fakturownia_sync.state import ClientLink, StateStore

log = logging.getLogger(__name__)

PERSON = "person"  # the evidence of a link a person made on the review page


class Refused(Exception):
    """A decision that cannot be applied as asked; its message is the outcome shown in the audit list."""


def _label(side: str) -> str:
    return "Fakturownia client" if side == FAKTUROWNIA else "CRM client"


def _other_system(side: str) -> str:
    return "the CRM" if side == FAKTUROWNIA else "Fakturownia"


class ReviewDecisions:
    def __init__(
        self,
        fakturownia: FakturowniaClient,
        store: StateStore,
        summary: Any,
        bases: ClientBases,
        review: ReviewBuilder,
        creation: ClientCreation,
    ) -> None:
        self.fakturownia = fakturownia
        self.store = store
        self.summary = summary
        self.bases = bases
        self.review = review
        self.creation = creation
        self._secrets = (fakturownia.account.token,)
        self._told_apart: list[dict[str, Any]] = []  # accepted `different` decisions, marked after the creates
        self._gone: set[str] = set()  # subjects found deleted while a decision waited

    # Applying ------------------------------------------------------------------------------------------

    def apply(self) -> None:
        """Apply every pending decision; call once both bases and the links are loaded, before matching."""
        self.bases.apart |= {
            (int(row["fakturownia_client_id"]), int(row["crm_client_id"]))
            for row in self.store.applied_review_decisions("different")
            if row["fakturownia_client_id"] and row["crm_client_id"]
        }
        pending = self.store.pending_review_decisions()
        latest = {row["subject"]: row for row in pending}  # oldest first: a subject's last decision wins
        actions = {"link": self._link, "different": self._different, "ignore": self._ignore}
        for row in pending:
            newer = latest[row["subject"]]
            if newer["id"] != row["id"]:
                if self.store.mark_review_decision_superseded(int(row["id"]), newer):
                    self.summary.review_decisions_superseded += 1
                continue
            try:
                action = actions.get(row["decision"])
                if action is None:
                    raise Refused(f"'{row['decision']}' is not a review decision")
                action(row)
            except Refused as exc:
                self._mark(row, f"Refused: {exc}.", "refused")
            except (ApiAuthError, ApiUnavailable):
                raise  # the run fails and retries; the decision stays pending
            except Exception as exc:
                log.exception("review decision %s on %s: unexpected error", row["id"], row["subject"])
                message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
                self._mark(row, f"Refused: it could not be applied ({message}); decide again.", "refused")

    def _link(self, row: dict[str, Any]) -> None:
        f_id, c_id = self._pair(row)
        link_f, link_c = self.store.client_link(f_id), self.store.client_link_of_crm(c_id)
        if link_f is not None and link_f.crm_client_id == c_id:  # done by an earlier attempt (or by the matcher)
            self.bases.set_link(link_f)
            self._done(row, f"{self._names(f_id, c_id)} are linked (evidence: {link_f.evidence}); nothing more to do")
            return
        if link_f is not None:
            raise Refused(
                f"Fakturownia client {f_id} is already linked to CRM client {link_f.crm_client_id}, and a client is "
                "linked to one client only"
            )
        if link_c is not None:
            raise Refused(
                f"CRM client {c_id} is already linked to Fakturownia client {link_c.fakturownia_client_id}, and a "
                "client is linked to one client only"
            )
        if c_id not in self.bases.crm:
            raise Refused(f"CRM client {c_id} no longer exists (deleted while the decision waited); nothing was linked")
        if not self._fakturownia_exists(f_id):
            raise Refused(
                f"Fakturownia client {f_id} no longer exists (deleted while the decision waited); nothing was linked"
            )
        made = self.store.link_clients(f_id, c_id, PERSON)
        if not made:  # an overlapping run got there first: the same link is this decision done, another is not
            now = self.store.client_link(f_id)
            if now is None or now.crm_client_id != c_id:
                raise Refused(f"another run linked Fakturownia client {f_id} or CRM client {c_id} a moment ago")
        self.bases.set_link(ClientLink(f_id, c_id, PERSON, None))
        if made:
            self.summary.clients_linked += 1
            self.summary.linked_by_evidence[PERSON] += 1
        self._done(
            row, f"Linked {self._names(f_id, c_id)} as one company; their fields are merged both ways from this run on"
        )

    def _different(self, row: dict[str, Any]) -> None:
        f_id, c_id = self._pair(row)
        link_f = self.store.client_link(f_id)
        if link_f is not None and link_f.crm_client_id == c_id:
            raise Refused(f"{self._names(f_id, c_id)} are linked to each other, and a linked pair stays linked")
        if link_f is None and not self._fakturownia_exists(f_id):
            self._gone.add(f"{FAKTUROWNIA}:{f_id}")
        if c_id not in self.bases.crm:
            self._gone.add(f"{CRM}:{c_id}")
        self.bases.apart.add((f_id, c_id))
        self._told_apart.append(row)

    def _ignore(self, row: dict[str, Any]) -> None:
        entry = self.store.client_review_entry(row["subject"])
        if entry is None:
            outcome = f"There is no review entry for {row['subject']}; nothing to ignore, nothing was changed"
        else:
            outcome = (
                f"Ignored: the entry for {row['subject']} ({entry['reason']}) is closed and stays closed while later "
                "runs find the same evidence; a different finding opens it again. Nothing was changed in either "
                "system"
            )
        self._done(row, outcome)

    def finish(self) -> None:
        """Mark the `different` decisions once the run's creates are done, saying what became of each record. One
        whose create is still in flight (another run's, or an answer lost) stays pending: the run that settles it
        marks it, with what really became of the record."""
        unsettled = {"held_by_other", "unconfirmed"}
        for row in self._told_apart:
            f_id, c_id = int(row["fakturownia_client_id"]), int(row["crm_client_id"])
            outcomes = self.creation.outcomes
            statuses = {outcomes.get(f"{FAKTUROWNIA}:{f_id}"), outcomes.get(f"{CRM}:{c_id}")}
            if statuses & unsettled:
                continue
            fates = f"{self._fate(FAKTUROWNIA, f_id)}; {self._fate(CRM, c_id)}"
            self._done(
                row,
                f"Fakturownia client {f_id} and CRM client {c_id} are two companies and no longer hold each other "
                f"back: {fates}",
            )
        self._told_apart = []

    def in_force_ignores(self) -> dict[str, datetime]:
        """Subjects a person chose to ignore, with when the latest such decision was applied."""
        return {row["subject"]: row["applied_at"] for row in self.store.applied_review_decisions("ignore")}

    # The matcher's answer, less what a person told apart ------------------------------------------------

    # Helpers -------------------------------------------------------------------------------------------

    def _pair(self, row: dict[str, Any]) -> tuple[int, int]:
        f_id, c_id = row.get("fakturownia_client_id"), row.get("crm_client_id")
        if not f_id or not c_id:
            named = f"Fakturownia client {f_id}" if f_id else f"CRM client {c_id}" if c_id else "no client"
            raise Refused(
                f"'{row['decision']}' needs a Fakturownia client and a CRM client, and this decision names {named} only"
            )
        return int(f_id), int(c_id)

    def _fakturownia_exists(self, f_id: int) -> bool:
        """Asked of Fakturownia itself: the mirror never learns of a deletion between full reads. A client found
        gone is dropped from the mirror and the run, so nothing is linked to or created for it."""
        try:
            record = self.fakturownia.get_client(f_id)
        except ApiNotFound:
            self.bases.fakturownia.pop(f_id, None)
            self.store.forget_fakturownia_clients([f_id])
            return False
        self.bases.remember_fakturownia(trim(record, MIRROR_FIELDS))
        return True

    def _names(self, f_id: int, c_id: int) -> str:
        def named(side: str, record_id: int) -> str:
            record = (self.bases.fakturownia if side == FAKTUROWNIA else self.bases.crm).get(record_id) or {}
            name = record.get("name") or " ".join(filter(None, (record.get("first_name"), record.get("last_name"))))
            return f"{_label(side)} {record_id}" + (f" ({name})" if name else "")

        return f"{named(FAKTUROWNIA, f_id)} and {named(CRM, c_id)}"

    def _fate(self, side: str, record_id: int) -> str:
        """What became of one record of a pair told apart, in words for the audit list."""
        subject, own, other = f"{side}:{record_id}", f"{_label(side)} {record_id}", _other_system(side)
        if subject in self._gone:
            return f"{own} no longer exists"
        link = self.bases.links.get(record_id) if side == FAKTUROWNIA else self.bases.partner_of_crm(record_id)
        status = self.creation.outcomes.get(subject)
        if link is not None:
            partner = link.crm_client_id if side == FAKTUROWNIA else link.fakturownia_client_id
            if status == "created":
                return f"{own} was created in {other} as client {partner}"
            return f"{own} is linked to {_label(CRM if side == FAKTUROWNIA else FAKTUROWNIA)} {partner}"
        entry = self.review.entries.get(subject)
        if entry is not None:
            return f"{own} is not copied to {other} yet: {entry.message}"
        return f"{own} is not copied to {other}"

    def _done(self, row: dict[str, Any], outcome: str) -> None:
        """Act's last step, then the mark: the entry answered is resolved (a later run reopens it only for a
        finding that still holds: the decision changed nothing about it, or it is another one)."""
        self.store.resolve_client_review(row["subject"])
        self._mark(row, outcome + ".", "applied")

    def _mark(self, row: dict[str, Any], outcome: str, kind: str) -> None:
        if self.store.mark_review_decision_applied(int(row["id"]), outcome):
            counter = f"review_decisions_{kind}"
            setattr(self.summary, counter, getattr(self.summary, counter) + 1)
            log.info("review decision %s (%s on %s): %s", row["id"], row["decision"], row["subject"], outcome)
