"""Clients that exist on one side only are created on the other, each under a claim.

An unmatched Fakturownia client becomes a CRM client carrying `external_ids.fakturownia_client_id`; an
unmatched CRM client becomes a Fakturownia client carrying `external_id` = the CRM id; each through
`claims.create_under_claim`, on every evidence key of the company (`fakturownia:<id>` or `crm:<id>`, its NIP,
its e-mail: `claims.company_keys`, the keys the invoices and deals syncs claim too), so that two processes
reaching one company by different evidence never both create it. A create in flight elsewhere is deferred
(the run ends incomplete); a create whose answer was lost is counted as unconfirmed, and the next attempt
finds the record (a fresh read of the CRM decided by the matcher; Fakturownia asked by `external_id`) before
anything is created again.

What is created and what is held follows DESIGN.md "Client decisions" (`client_decisions`): an invalid or
junk tax id is no tax id (the record is created, and an `invalid_tax_id` note says what to fix); a look-alike
(same normalised name at the same post code) that strong keys tell apart (different valid NIPs, different
e-mails) never holds a record back: it is created and a `possible_duplicate` note names the look-alike. A
record is held only when it closely resembles one that nothing tells it apart from.

A backfill creates thousands of clients, and one create at a time would be paced by the APIs' latency rather
than their rate limit: each side's creates are decided serially, their claims and requests run
`crm_write_concurrency` at a time, and their answers are applied in the records' order (`client_writes`), so
the run ends as the one-at-a-time run did. Records sharing an evidence key are created one after another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from fakturownia_sync.bulk_matching import BulkMatch
from fakturownia_sync.claims import CRM_CLIENT, FAKTUROWNIA_CLIENT, ClaimOutcome, company_keys, create_under_claim
from fakturownia_sync.client_bases import (
    CRM_RECORD_FIELDS,
    MIRROR_FIELDS,
    ClientBases,
    brief,
    places,
    trim,
)
from fakturownia_sync.client_decisions import holds_back, made_for_an_anonymous_buyer
from fakturownia_sync.client_fields import client_view, crm_client_fields, fakturownia_client_fields
from fakturownia_sync.client_lookup import fakturownia_clients_by_external_id
from fakturownia_sync.client_matching import CrmClientIndex
from fakturownia_sync.client_merge import CRM, FAKTUROWNIA, snapshot_of
from fakturownia_sync.client_notes import note_invalid_tax_ids, note_resemblances
from fakturownia_sync.client_review_builder import ReviewBuilder, review_message
from fakturownia_sync.client_suggestions import LOOKALIKE_SCORE, similar_names
from fakturownia_sync.client_writes import FATAL, alone, run_all, settle_in_order
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import ApiAuthError, ApiRejected, ApiUnavailable, RecordError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.ids import as_id
from fakturownia_sync.records import Party
from fakturownia_sync.redaction import redact
from fakturownia_sync.state import ClientLink, StateStore
from fakturownia_sync.sugester_client import SugesterClient

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One create as the pool left it: its outcome or error, and the record it created or found (`learnt`)."""

    outcome: ClaimOutcome | None = None
    error: Exception | None = None
    learnt: dict[str, Any] | None = None
    created: bool = False


class ClientCreation:
    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        departments: DepartmentMap,
        summary: Any,
        bases: ClientBases,
        review: ReviewBuilder,
        *,
        owner: str,
        stale_claim_minutes: int,
        clock: Callable[[], datetime],
        concurrency: int = 1,
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.departments = departments
        self.summary = summary
        self.bases = bases
        self.review = review
        self.owner = owner
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self.concurrency = concurrency  # `crm_write_concurrency`: creates whose requests are in flight at once
        self._secrets = (fakturownia.account.token, crm.account.token)
        self.outcomes: dict[str, str] = {}  # claim outcome by subject (`fakturownia:<id>`), for decisions' outcomes

    def create_unmatched(self, match: BulkMatch) -> None:
        """Create the unmatched records of each side: Fakturownia's first, then the CRM's, as they always were
        (a CRM record's decision may read a link the Fakturownia step made); each step's requests go out
        `concurrency` at a time (`client_writes`)."""
        unmatched_f = [int(i) for i in match.unmatched_fakturownia]
        unmatched_c = [int(i) for i in match.unmatched_crm]
        lookalikes_f, lookalikes_c = self._lookalikes(unmatched_f, unmatched_c)
        self._create_all(
            FAKTUROWNIA, [f for f in unmatched_f if self._creatable(FAKTUROWNIA, f, lookalikes_f.get(f, []))]
        )
        self._create_all(CRM, [c for c in unmatched_c if self._creatable(CRM, c, lookalikes_c.get(c, []))])
        note_resemblances(self.bases, self.review)
        note_invalid_tax_ids(self.bases, self.review)
        self.review.suggest()

    def _create_all(self, side: str, record_ids: list[int]) -> None:
        """Create the copies of one side's records: claims and requests in the pool, then the answers applied
        in the records' order. A record that shares an evidence key with another is created in the apply step
        itself, after the records before it were applied, so two creates of one company never overlap."""
        records = self.bases.fakturownia if side == FAKTUROWNIA else self.bases.crm
        keys = [self._claim_keys(side, record_id, records[record_id]) for record_id in record_ids]
        pooled = alone(keys)
        jobs = [partial(self._attempt, side, r, k) for r, k, p in zip(record_ids, keys, pooled, strict=True) if p]
        answers = iter(run_all(jobs, self.concurrency, fatal=lambda attempt: isinstance(attempt.error, FATAL)))
        attempts = [next(answers) if in_pool else None for in_pool in pooled]

        def settle(item: tuple[int, list[str], bool, Attempt | None]) -> None:
            record_id, record_keys, in_pool, attempt = item
            if in_pool and attempt is None:
                return  # never started: the API was found unreachable first
            self._guarded(
                side,
                record_id,
                lambda: self._settle(side, record_id, attempt or self._attempt(side, record_id, record_keys)),
            )

        items = list(zip(record_ids, keys, pooled, attempts, strict=True))
        settle_in_order(items, settle, ran=lambda item: item[3] is not None)

    def _lookalikes(
        self, unmatched_f: list[int], unmatched_c: list[int]
    ) -> tuple[dict[int, list[tuple[int, float]]], dict[int, list[tuple[int, float]]]]:
        f_all, c_all = places(self.bases.fakturownia), places(self.bases.crm)
        f_query = f_all[f_all["id"].isin(unmatched_f)]
        c_query = c_all[c_all["id"].isin(unmatched_c)]
        return similar_names(f_query, c_all), similar_names(c_query, f_all)

    def _creatable(self, side: str, record_id: int, lookalikes: list[tuple[int, float]]) -> bool:
        """Whether an unmatched record may be copied to the other side; otherwise it goes to review."""
        record = (self.bases.fakturownia if side == FAKTUROWNIA else self.bases.crm)[record_id]
        others = self.bases.crm if side == FAKTUROWNIA else self.bases.fakturownia
        other_side = CRM if side == FAKTUROWNIA else FAKTUROWNIA
        if side == CRM and made_for_an_anonymous_buyer(record.get("note")):
            self.summary.from_documents_not_copied += 1
            return False  # its buyer lives in Fakturownia as documents: a card would be a second copy
        party = Party.from_client(record)
        if not (party.name or party.last_name or party.first_name):
            self.review.add(side, record_id, "no_name", "no name, first or last name: the other side refuses it")
            return False
        try:
            department = as_id(record.get("department_id"))
            (self.departments.to_crm if side == FAKTUROWNIA else self.departments.to_fakturownia)(department)
        except RecordError as exc:
            self.review.add(side, record_id, exc.reason, exc.message)
            return False
        apart = self.bases.told_apart(side, record_id)  # a person said these are other companies
        close = [(other, score) for other, score in lookalikes if score >= LOOKALIKE_SCORE and other not in apart]
        if close and holds_back(record, [others.get(other) or {} for other, _score in close]):
            suggestions = [
                {"side": other_side, "id": other, "score": score, **brief(others.get(other))} for other, score in close
            ]
            message = (
                "no NIP, e-mail or id matches, but a client with a very similar name at the same place exists "
                "and no NIP or e-mail tells the two apart"
            )
            self.review.add(side, record_id, "possible_duplicate", message, others.get(close[0][0]), suggestions)
            return False
        return True

    def _guarded(self, side: str, record_id: int, action: Callable[[], None]) -> None:
        """Apply one create; a refusal or an unexpected error reviews the record and the run carries on."""
        try:
            action()
        except ApiRejected as exc:
            self.review.add(side, record_id, f"{exc.api.lower()}_rejected", exc.message)
        except RecordError as exc:  # the look-up of an earlier create found no single answer
            self.review.add(side, record_id, exc.reason, exc.message)
        except (ApiAuthError, ApiUnavailable):
            raise
        except Exception as exc:
            log.exception("%s client %s: unexpected error", side, record_id)
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            self.review.add(side, record_id, "unexpected_error", message)

    def _stale_before(self) -> datetime:
        return self.clock() - timedelta(minutes=self.stale_claim_minutes)

    def _attempt(self, side: str, record_id: int, keys: list[str]) -> Attempt:
        """Create the other side's copy of a record under a claim on `keys`; run in the pool, so it only reads
        the run's picture: what it learns is returned, for `_settle` to apply in order."""
        attempt = Attempt()
        try:
            if side == FAKTUROWNIA:
                target, find_existing, create = CRM_CLIENT, *self._crm_copy(record_id, attempt)
            else:
                target, find_existing, create = FAKTUROWNIA_CLIENT, *self._fakturownia_copy(record_id, attempt)
            attempt.outcome = create_under_claim(
                self.store, target, keys, self.owner,
                find_existing=find_existing, create=create, stale_before=self._stale_before(),
            )  # fmt: skip
        except Exception as exc:  # re-raised by `_settle`, in the records' order
            attempt.error = exc
        return attempt

    def _crm_copy(self, f_id: int, attempt: Attempt) -> tuple[Callable[[], int | None], Callable[[], int]]:
        """A Fakturownia client's CRM copy, claimed on its card, NIP and e-mail (the keys invoices claim too)."""
        f_raw = self.bases.fakturownia[f_id]
        crm_department = self.departments.to_crm(as_id(f_raw.get("department_id")))
        fields = crm_client_fields(
            Party.from_client(f_raw), fakturownia_client_id=f_id, crm_department_id=crm_department
        )

        def find_existing() -> int | None:
            """A fresh read of the CRM decided by the matcher: an earlier create carries our external id."""
            fresh = {int(record["id"]): trim(record, CRM_RECORD_FIELDS) for record in self.crm.iter_clients()}
            index = CrmClientIndex(fresh.values(), self.bases.fakturownia.values(), self.bases.link_pairs())
            decision = index.match_card(f_id)
            if decision.refused:
                raise RecordError(
                    decision.reason, review_message(decision.reason, FAKTUROWNIA, f_id, tuple(decision.candidates))
                )
            if decision.partner_id in self.bases.told_apart(FAKTUROWNIA, f_id):
                return None  # another company, as a person said: not the copy an earlier attempt made
            if decision.partner_id is not None:
                attempt.learnt = fresh[int(decision.partner_id)]
            return decision.partner_id

        def create() -> int:
            attempt.learnt = trim(self.crm.create_client(fields), CRM_RECORD_FIELDS)
            attempt.created = True
            return int(attempt.learnt["id"])

        return find_existing, create

    def _fakturownia_copy(self, c_id: int, attempt: Attempt) -> tuple[Callable[[], int | None], Callable[[], int]]:
        """A CRM client's Fakturownia copy, claimed on `crm:<id>`, its NIP and e-mail (the keys deals claim too);
        `external_id` names the CRM client."""
        c_raw = self.bases.crm[c_id]
        f_department = self.departments.to_fakturownia(as_id(c_raw.get("department_id")))
        fields = fakturownia_client_fields(
            c_raw, crm_client_id=c_id, fakturownia_department_id=f_department, departments=self.departments.synced
        )

        def find_existing() -> int | None:
            found = fakturownia_clients_by_external_id(self.fakturownia, str(c_id))
            if len(found) > 1:
                ids = tuple(int(r["id"]) for r in found)
                raise RecordError("ambiguous_external_id", review_message("ambiguous_external_id", CRM, c_id, ids))
            if found:
                attempt.learnt = trim(found[0], MIRROR_FIELDS)
            return int(found[0]["id"]) if found else None

        def create() -> int:
            attempt.learnt = trim(self.fakturownia.create_client(fields), MIRROR_FIELDS)
            attempt.created = True
            return int(attempt.learnt["id"])

        return find_existing, create

    def _settle(self, side: str, record_id: int, attempt: Attempt) -> None:
        """Apply one create's answer to the run's picture, the links and the summary; then its error, if any."""
        if attempt.learnt is not None:
            if side == FAKTUROWNIA:
                self.bases.crm[int(attempt.learnt["id"])] = attempt.learnt
            else:
                self.bases.remember_fakturownia(attempt.learnt)
        if attempt.created:
            if side == FAKTUROWNIA:
                self.summary.created_in_crm += 1
            else:
                self.summary.created_in_fakturownia += 1
        if attempt.error is not None:
            raise attempt.error
        outcome = attempt.outcome
        assert outcome is not None
        if outcome.record_id is not None:
            pair = (record_id, outcome.record_id) if side == FAKTUROWNIA else (outcome.record_id, record_id)
            self._link_created(*pair, "created")
        self._count(outcome, side, record_id)

    def _claim_keys(self, side: str, record_id: int, record: dict[str, Any]) -> list[str]:
        """The company's evidence keys (`claims.company_keys`), less those it shares with records a person told
        apart from it: a shared NIP or e-mail is not this company's identity then, and a claim on it would hand
        the create the other company's record."""
        keys = company_keys(f"{side}:{record_id}", record.get("tax_no"), record.get("email"))
        others = self.bases.crm if side == FAKTUROWNIA else self.bases.fakturownia
        apart = [others.get(other) or {} for other in self.bases.told_apart(side, record_id)]
        theirs = {key for other in apart for key in company_keys(None, other.get("tax_no"), other.get("email"))}
        return [key for key in keys if key not in theirs]

    def _count(self, outcome: ClaimOutcome, side: str, record_id: int) -> None:
        """Found: another attempt's create (an earlier run's, or another process's on the same company).
        Held elsewhere: deferred to a later run. Unconfirmed: the run fails so that its retry looks it up."""
        what = f"{'Fakturownia' if side == FAKTUROWNIA else 'CRM'} client {record_id}"
        self.outcomes[f"{side}:{record_id}"] = outcome.status
        if outcome.status == "found":
            self.summary.creates_recovered += 1
        elif outcome.status == "held_by_other":
            log.info("%s: run %s is creating its copy right now", what, outcome.holder)
            self.summary.deferred += 1
        elif outcome.status == "unconfirmed":
            self.summary.unconfirmed += 1

    def _link_created(self, f_id: int, c_id: int, evidence: str) -> None:
        """Link a pair one side of which was just created, with both sides' values as the snapshot."""
        f_raw, c_raw = self.bases.fakturownia.get(f_id), self.bases.crm.get(c_id)
        snapshot = snapshot_of(client_view(f_raw), client_view(c_raw)) if f_raw and c_raw else None
        if not self.store.link_clients(f_id, c_id, evidence, snapshot):
            existing = self.store.client_link(f_id)
            if existing is None or existing.crm_client_id != c_id:
                message = (
                    f"Fakturownia client {f_id} and CRM client {c_id} belong together, but one is linked elsewhere"
                )
                self.review.add(FAKTUROWNIA, f_id, "duplicate_of_linked", message, c_raw)
            return
        self.bases.links[f_id] = ClientLink(f_id, c_id, evidence, snapshot)
        self.bases.linked_crm.add(c_id)
