"""The two-way client sync: one client base in Fakturownia and the CRM, deduplicated, with departments.

What a run reads
    Fakturownia by the `updated_at` sweep (newest first, down to `cursor - lookback`), into a mirror of
    every Fakturownia client kept in the state DB: matching needs the whole base, since a new client may
    duplicate an unchanged one. The CRM documents no ordering and no "changed since", so every run reads
    all CRM clients and finds changes by content against the last synced snapshot. With `full`, both
    sides are read completely (the mirror is rebuilt) and the run still writes nothing where nothing differs.
    Whether Fakturownia honours `order=updated_at.desc` for clients is not documented: the sweep checks
    the order it gets and reads to the end when it is not descending.

What a run decides, in order
    1. matching, over both whole bases (`bulk_matching`): new links, review entries, unmatched records;
    2. the field-by-field merge of every linked pair against its snapshot (`client_merge`), writes both ways,
       conflicts settled by `conflict_policy` and recorded;
    3. creates: an unmatched Fakturownia client becomes a CRM client carrying
       `external_ids.fakturownia_client_id`; an unmatched CRM client becomes a Fakturownia client carrying
       `external_id` = the CRM id; each under a claim in the state DB (`fakturownia:<id>`, the key the
       invoices sync uses too, and `crm:<id>`);
    4. the review list is replaced by what this run found (`review`); entries no longer found resolve.

How a crash between a create and its commit is survived
    The claim stays unconfirmed. The next run reads the CRM completely and the Fakturownia sweep reaches
    back to the old cursor, so the created client is seen carrying its external id and is linked by the
    matcher; a create is repeated only when a claim of ours (or a stale one) has no such client anywhere,
    after `GET /clients.json?external_id=` on Fakturownia. A create whose answer was lost leaves the run
    `incomplete`: the cursor stays, and the task fails so that its retry settles it.

What is never done
    Nothing is deleted on either side, nothing is merged on name similarity, and a record under review
    gets no writes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fakturownia_sync.bulk_matching import BulkMatch, crm_frame, fakturownia_frame, match_client_bases
from fakturownia_sync.client_fields import (
    FAKTUROWNIA_CLIENT_KEY,
    SYNCED_FIELDS,
    client_view,
    crm_client_fields,
    fakturownia_client_fields,
    writable_value,
)
from fakturownia_sync.client_keys import tax_key
from fakturownia_sync.client_lookup import fakturownia_clients_by_external_id
from fakturownia_sync.client_merge import CRM, FAKTUROWNIA, plan_merge, snapshot_of
from fakturownia_sync.client_suggestions import LOOKALIKE_SCORE, place_frame, similar_names
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import (
    AmbiguousWriteError,
    ApiAuthError,
    ApiNotFound,
    ApiRejected,
    ApiUnavailable,
    RecordError,
    SyncError,
)
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.records import Party, parse_timestamp
from fakturownia_sync.redaction import redact
from fakturownia_sync.review import ReviewEntry, subject
from fakturownia_sync.state import ClientLink, StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of

log = logging.getLogger(__name__)

STREAM = "clients_sync"
SNAPSHOT_BATCH = 500
MIRROR_FIELDS = ("id", "updated_at", "external_id", *SYNCED_FIELDS)
CRM_RECORD_FIELDS = ("id", "updated_at", "external_ids", *SYNCED_FIELDS)


class UnconfirmedCreates(SyncError):
    """Some creates could not be confirmed either way; the run fails so that a retry settles them."""


@dataclass
class ClientsSummary:
    """What a client sync run did: the task's return value (XCom), stored with the run, printed by the demo."""

    stream: str = STREAM
    status: str = "running"
    full: bool = False
    fakturownia_clients_read: int = 0
    crm_clients_read: int = 0
    clients_linked: int = 0
    linked_by_evidence: Counter = field(default_factory=Counter)
    created_in_crm: int = 0
    created_in_fakturownia: int = 0
    creates_recovered: int = 0
    updated_in_crm: int = 0
    updated_in_fakturownia: int = 0
    conflicts: int = 0
    conflicts_by_field: Counter = field(default_factory=Counter)
    review_by_reason: dict[str, int] = field(default_factory=dict)
    review_opened: int = 0
    review_resolved: int = 0
    deferred: int = 0
    unconfirmed: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    api_retries: dict[str, int] = field(default_factory=dict)
    cursor_before: str | None = None
    cursor_after: str | None = None
    duration_seconds: float = 0.0

    @property
    def writes(self) -> int:
        return self.created_in_crm + self.created_in_fakturownia + self.updated_in_crm + self.updated_in_fakturownia

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["linked_by_evidence"] = dict(sorted(self.linked_by_evidence.items()))
        data["conflicts_by_field"] = dict(sorted(self.conflicts_by_field.items()))
        data["review_total"] = sum(self.review_by_reason.values())
        return data


def _trim(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: record.get(name) for name in fields if name in record}


class ClientsSync:
    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        config: SyncConfig,
        *,
        owner: str,
        full: bool = False,
        stale_claim_minutes: int = 15,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.config = config
        self.owner = owner
        self.full = full
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self.departments = DepartmentMap(config)
        self.summary = ClientsSummary(full=full)
        self._secrets = (fakturownia.account.token, crm.account.token)
        self._f: dict[int, dict[str, Any]] = {}
        self._c: dict[int, dict[str, Any]] = {}
        self._links_f: dict[int, ClientLink] = {}
        self._linked_c: set[int] = set()
        self._review: dict[str, ReviewEntry] = {}
        self._mirror_updates: list[tuple[dict[str, Any], datetime | None]] = []
        self._snapshots: dict[int, dict[str, Any]] = {}

    # The run -------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started, started_clock = self.clock(), time.monotonic()
        run_id = self.store.start_run(STREAM, self.owner)
        summary = self.summary
        cursor = self.store.get_cursor(STREAM)
        summary.cursor_before = cursor.isoformat() if cursor else None
        try:
            newest = self._read_fakturownia(cursor)
            self._c = {int(r["id"]): _trim(r, CRM_RECORD_FIELDS) for r in self.crm.iter_clients()}
            summary.crm_clients_read = len(self._c)
            self._f = {int(r["id"]): r for r in self.store.fakturownia_clients()}
            self._load_links()
            match = match_client_bases(
                fakturownia_frame(self._f.values()), crm_frame(self._c.values()), self._link_pairs()
            )
            self._link_matches(match)
            self._merge_linked()
            self._create_unmatched(match)
            self._flush()
            opened, resolved = self.store.sync_client_review(entry.as_row() for entry in self._review.values())
            summary.review_opened, summary.review_resolved = opened, resolved
            summary.review_by_reason = dict(sorted(Counter(e.reason for e in self._review.values()).items()))
            if summary.unconfirmed or summary.deferred:
                summary.status = "incomplete"
            else:
                if newest is not None:
                    new_cursor = min(newest, started)
                    if cursor is None or new_cursor > cursor:
                        self.store.set_cursor(STREAM, new_cursor)
                        cursor = new_cursor
                summary.status = "success"
        except BaseException as exc:
            summary.status = "failed"
            self._flush()
            self._finish(run_id, started_clock, cursor, error=redact(str(exc), self._secrets))
            raise
        self._finish(run_id, started_clock, cursor)
        if summary.unconfirmed:
            raise UnconfirmedCreates(
                f"{summary.unconfirmed} client create(s) got no answer; the cursor was not advanced and the "
                "next try finds them by their external ids before creating anything again"
            )
        return summary.to_dict()

    def _finish(self, run_id: int, started_clock: float, cursor: datetime | None, error: str | None = None) -> None:
        summary = self.summary
        summary.cursor_after = cursor.isoformat() if cursor else None
        summary.duration_seconds = round(time.monotonic() - started_clock, 3)
        summary.api_calls = {"fakturownia": self.fakturownia.transport.calls, "sugester": self.crm.transport.calls}
        summary.api_retries = {
            "fakturownia": self.fakturownia.transport.retries,
            "sugester": self.crm.transport.retries,
        }
        self.store.finish_run(run_id, summary.status, summary.to_dict(), error)

    def _flush(self) -> None:
        """Persist what the run learnt so far: mirror versions and snapshots (cheap to redo, costly to lose)."""
        if self._mirror_updates:
            self.store.save_fakturownia_clients(self._mirror_updates)
            self._mirror_updates = []
        if self._snapshots:
            self.store.set_client_snapshots(self._snapshots)
            self._snapshots = {}

    # Reading -------------------------------------------------------------------------------------------

    def _read_fakturownia(self, cursor: datetime | None) -> datetime | None:
        """Sweep Fakturownia clients newest-updated first into the mirror; return the newest `updated_at`."""
        full = self.full or cursor is None
        threshold = None if full else cursor - timedelta(minutes=self.config.lookback_minutes)
        records: dict[int, tuple[dict[str, Any], datetime | None]] = {}
        newest: datetime | None = None
        previous: datetime | None = None
        descending = True
        for page in self.fakturownia.iter_client_pages_by_update():
            for raw in page:
                updated = parse_timestamp(raw.get("updated_at"))
                if previous is not None and updated is not None and updated > previous:
                    descending = False  # the server ignored the order: only a complete read is safe
                previous = updated or previous
                if raw.get("id") is None or int(raw["id"]) in records:
                    continue  # offset paging over a moving list can repeat an item
                if threshold is not None and updated is not None and updated < threshold:
                    continue
                records[int(raw["id"])] = (_trim(raw, MIRROR_FIELDS), updated)
                if updated is not None and (newest is None or updated > newest):
                    newest = updated
            last = parse_timestamp(page[-1].get("updated_at")) if page else None
            if threshold is not None and descending and last is not None and last < threshold:
                break
        self.store.save_fakturownia_clients(records.values(), replace_all=full)
        self.summary.fakturownia_clients_read = len(records)
        return newest

    def _load_links(self) -> None:
        self._links_f = {link.fakturownia_client_id: link for link in self.store.all_client_links()}
        self._linked_c = {link.crm_client_id for link in self._links_f.values()}

    def _link_pairs(self) -> list[tuple[int, int]]:
        return [(link.fakturownia_client_id, link.crm_client_id) for link in self._links_f.values()]

    # Matching ------------------------------------------------------------------------------------------

    def _link_matches(self, match: BulkMatch) -> None:
        rows = list(
            zip(match.matches["fakturownia_id"], match.matches["crm_id"], match.matches["evidence"], strict=True)
        )
        linked = set(self.store.link_clients_many([(int(f), int(c), str(e), None) for f, c, e in rows]))
        pending_crm = self.store.unconfirmed_crm_client_claims()
        pending_fakturownia = self.store.unconfirmed_fakturownia_client_claims()
        for f, c, evidence in rows:
            f, c = int(f), int(c)
            if (f, c) not in linked:
                continue  # linked elsewhere a moment ago (a concurrent invoices run); next run sees it
            self._links_f[f] = ClientLink(f, c, str(evidence), None)
            self._linked_c.add(c)
            self.summary.clients_linked += 1
            self.summary.linked_by_evidence[str(evidence)] += 1
            # An earlier attempt's create that did reach the server: its claim is settled now.
            if f"fakturownia:{f}" in pending_crm:
                self.store.confirm_crm_client(f"fakturownia:{f}", c)
                self.summary.creates_recovered += 1
            if f"crm:{c}" in pending_fakturownia:
                self.store.confirm_fakturownia_client(f"crm:{c}", f)
                self.summary.creates_recovered += 1
        for row in match.review.itertuples(index=False):
            self._review_matching(row.side, int(row.id), row.reason, tuple(row.candidates))

    def _review_matching(self, side: str, record_id: int, reason: str, candidates: tuple[int, ...]) -> None:
        """A review entry from the matcher; candidates are of the other side, or of the same for duplicates."""
        same_side = reason.startswith("duplicate_in_")
        own, other = (self._f, self._c) if side == FAKTUROWNIA else (self._c, self._f)
        pool = own if same_side else other
        candidate_side = side if same_side else (CRM if side == FAKTUROWNIA else FAKTUROWNIA)
        suggestions = [
            {"side": candidate_side, "id": cid, "evidence": reason, **_brief(pool.get(cid))} for cid in candidates
        ]
        first = pool.get(candidates[0]) if candidates and not same_side else None
        self._add_review(side, record_id, reason, _message(reason, side, record_id, candidates), first, suggestions)

    def _add_review(
        self,
        side: str,
        record_id: int,
        reason: str,
        message: str,
        partner: dict[str, Any] | None = None,
        suggestions: list[dict[str, Any]] | None = None,
    ) -> None:
        key = subject(side, record_id)
        if key in self._review:
            return  # the first (strongest) reason stands
        own = (self._f if side == FAKTUROWNIA else self._c).get(record_id)
        f_record, c_record = (own, partner) if side == FAKTUROWNIA else (partner, own)
        self._review[key] = ReviewEntry(
            subject=key,
            reason=reason,
            message=message,
            fakturownia_client_id=int(f_record["id"]) if f_record else None,
            crm_client_id=int(c_record["id"]) if c_record else None,
            fakturownia_record=f_record,
            crm_record=c_record,
            suggestions=suggestions or [],
        )

    # Merging linked pairs ------------------------------------------------------------------------------

    def _agree(self, name: str, value_f: Any, value_c: Any) -> bool:
        return self.departments.agree(value_f, value_c) if name == "department_id" else value_f == value_c

    def _merge_linked(self) -> None:
        for f_id, link in list(self._links_f.items()):
            f_raw, c_raw = self._f.get(f_id), self._c.get(link.crm_client_id)
            if f_raw is None or c_raw is None:
                self._missing_partner(link, f_raw, c_raw)
                continue
            try:
                self._merge_pair(link, f_raw, c_raw)
            except RecordError as exc:
                self._add_review(FAKTUROWNIA, f_id, exc.reason, exc.message, c_raw)
            except ApiNotFound as exc:
                side = FAKTUROWNIA if exc.api.lower() == FAKTUROWNIA else CRM
                self._missing_partner(link, None if side == FAKTUROWNIA else f_raw, c_raw if side != CRM else None)
            except ApiRejected as exc:
                self._add_review(FAKTUROWNIA, f_id, f"{exc.api.lower()}_rejected", exc.message, c_raw)
            except (ApiAuthError, ApiUnavailable):
                raise
            except Exception as exc:
                log.exception("client pair %s/%s: unexpected error", f_id, link.crm_client_id)
                message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
                self._add_review(FAKTUROWNIA, f_id, "unexpected_error", message, c_raw)
            if len(self._snapshots) >= SNAPSHOT_BATCH:
                self._flush()

    def _missing_partner(self, link: ClientLink, f_raw: dict[str, Any] | None, c_raw: dict[str, Any] | None) -> None:
        if f_raw is not None:
            message = f"linked CRM client {link.crm_client_id} no longer exists; it is not recreated"
            self._add_review(FAKTUROWNIA, link.fakturownia_client_id, "linked_record_missing", message)
        elif c_raw is not None:
            message = f"linked Fakturownia client {link.fakturownia_client_id} no longer exists; it is not recreated"
            self._add_review(CRM, link.crm_client_id, "linked_record_missing", message)

    def _merge_pair(self, link: ClientLink, f_raw: dict[str, Any], c_raw: dict[str, Any]) -> None:
        f_id, c_id = link.fakturownia_client_id, link.crm_client_id
        view_f, view_c = client_view(f_raw), client_view(c_raw)
        self.departments.check(view_f["department_id"], view_c["department_id"])
        plan = plan_merge(
            view_f,
            view_c,
            link.snapshot,
            policy=self.config.conflict_policy,
            fakturownia_updated=parse_timestamp(f_raw.get("updated_at")),
            crm_updated=parse_timestamp(c_raw.get("updated_at")),
            agree=self._agree,
        )
        to_f = {name: self._for_fakturownia(name, c_raw) for name in plan.to_fakturownia}
        to_c = {name: self._for_crm(name, f_raw) for name in plan.to_crm}
        first_contact = link.snapshot is None
        if first_contact and FAKTUROWNIA_CLIENT_KEY not in external_ids_of(c_raw):
            # Stamped once, when first linked, so the link survives the loss of the state DB.
            to_c["external_ids"] = {FAKTUROWNIA_CLIENT_KEY: str(f_id)}
        if to_f:
            f_raw = self._update_fakturownia(f_id, to_f, f_raw)
        if to_c:
            c_raw = self._update_crm(c_id, to_c, c_raw)
        if plan.conflicts:
            self._record_conflicts(f_id, c_id, plan.conflicts)
        snapshot = snapshot_of(client_view(f_raw), client_view(c_raw))
        if snapshot != link.snapshot:
            self._snapshots[f_id] = snapshot
            self._links_f[f_id] = ClientLink(f_id, c_id, link.evidence, snapshot)

    def _for_crm(self, name: str, f_raw: dict[str, Any]) -> Any:
        if name == "department_id":
            return self.departments.to_crm(writable_value(name, f_raw.get(name)))
        return writable_value(name, f_raw.get(name))

    def _for_fakturownia(self, name: str, c_raw: dict[str, Any]) -> Any:
        if name == "department_id":
            return self.departments.to_fakturownia(writable_value(name, c_raw.get(name)))
        return writable_value(name, c_raw.get(name))

    def _update_fakturownia(self, f_id: int, fields: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        answer = self.fakturownia.update_client(f_id, fields)
        record = _trim(answer, MIRROR_FIELDS) if isinstance(answer, dict) and answer.get("id") else {**old, **fields}
        self._f[f_id] = record
        self._mirror_updates.append((record, parse_timestamp(record.get("updated_at"))))
        self.summary.updated_in_fakturownia += 1
        return record

    def _update_crm(self, c_id: int, fields: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        answer = self.crm.update_client(c_id, fields)
        record = (
            _trim(answer, CRM_RECORD_FIELDS) if isinstance(answer, dict) and answer.get("id") else {**old, **fields}
        )
        self._c[c_id] = record
        self.summary.updated_in_crm += 1
        return record

    def _record_conflicts(self, f_id: int, c_id: int, conflicts: list) -> None:
        rows = []
        for conflict in conflicts:
            log.info(
                "client %s/%s: %s changed on both sides; %s wins (%s)",
                f_id,
                c_id,
                conflict.field,
                conflict.winner,
                self.config.conflict_policy,
            )
            self.summary.conflicts += 1
            self.summary.conflicts_by_field[conflict.field] += 1
            rows.append(
                {
                    "fakturownia_client_id": f_id,
                    "crm_client_id": c_id,
                    "field": conflict.field,
                    "fakturownia_value": conflict.fakturownia_value,
                    "crm_value": conflict.crm_value,
                    "fakturownia_base": conflict.fakturownia_base,
                    "crm_base": conflict.crm_base,
                    "policy": self.config.conflict_policy,
                    "winner": conflict.winner,
                    "run_owner": self.owner,
                }
            )
        self.store.record_client_conflicts(rows)

    # Creating ------------------------------------------------------------------------------------------

    def _create_unmatched(self, match: BulkMatch) -> None:
        unmatched_f = [int(i) for i in match.unmatched_fakturownia]
        unmatched_c = [int(i) for i in match.unmatched_crm]
        lookalikes_f, lookalikes_c = self._lookalikes(unmatched_f, unmatched_c)
        for f_id in unmatched_f:
            if self._creatable(FAKTUROWNIA, f_id, lookalikes_f.get(f_id, [])):
                self._guarded(FAKTUROWNIA, f_id, self._create_in_crm)
        for c_id in unmatched_c:
            if self._creatable(CRM, c_id, lookalikes_c.get(c_id, [])):
                self._guarded(CRM, c_id, self._create_in_fakturownia)
        self._suggest_for_review()

    def _lookalikes(
        self, unmatched_f: list[int], unmatched_c: list[int]
    ) -> tuple[dict[int, list[tuple[int, float]]], dict[int, list[tuple[int, float]]]]:
        f_all, c_all = self._places(self._f), self._places(self._c)
        f_query = f_all[f_all["id"].isin(unmatched_f)]
        c_query = c_all[c_all["id"].isin(unmatched_c)]
        return similar_names(f_query, c_all), similar_names(c_query, f_all)

    @staticmethod
    def _places(records: dict[int, dict[str, Any]]) -> Any:
        rows = list(records.values())
        return place_frame(
            [r["id"] for r in rows],
            [r.get("name") or " ".join(filter(None, (r.get("first_name"), r.get("last_name")))) for r in rows],
            [r.get("post_code") for r in rows],
            [r.get("city") for r in rows],
        )

    def _creatable(self, side: str, record_id: int, lookalikes: list[tuple[int, float]]) -> bool:
        """Whether an unmatched record may be copied to the other side; otherwise it goes to review."""
        record = (self._f if side == FAKTUROWNIA else self._c)[record_id]
        others = self._c if side == FAKTUROWNIA else self._f
        other_side = CRM if side == FAKTUROWNIA else FAKTUROWNIA
        party = Party.from_client(record)
        if not (party.name or party.last_name or party.first_name):
            self._add_review(side, record_id, "no_name", "no name, first or last name: the other side refuses it")
            return False
        if party.tax_no and tax_key(party.tax_no) is None:
            message = f"NIP {party.tax_no!r} fails its checksum; fix it before the client is copied"
            self._add_review(side, record_id, "invalid_nip", message)
            return False
        try:
            if self.departments.synced:
                department = record.get("department_id")
                department = int(department) if department not in (None, "") else None
                (self.departments.to_crm if side == FAKTUROWNIA else self.departments.to_fakturownia)(department)
        except RecordError as exc:
            self._add_review(side, record_id, exc.reason, exc.message)
            return False
        close = [(other, score) for other, score in lookalikes if score >= LOOKALIKE_SCORE]
        if close:
            suggestions = [
                {"side": other_side, "id": other, "score": score, **_brief(others.get(other))} for other, score in close
            ]
            message = "no NIP, e-mail or id matches, but a client with a very similar name at the same place exists"
            self._add_review(side, record_id, "possible_duplicate", message, others.get(close[0][0]), suggestions)
            return False
        return True

    def _guarded(self, side: str, record_id: int, action: Callable[[int], None]) -> None:
        """Run one create; a refusal or an unexpected error reviews the record and the run carries on."""
        try:
            action(record_id)
        except ApiRejected as exc:
            self._add_review(side, record_id, f"{exc.api.lower()}_rejected", exc.message)
        except (ApiAuthError, ApiUnavailable):
            raise
        except Exception as exc:
            log.exception("%s client %s: unexpected error", side, record_id)
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            self._add_review(side, record_id, "unexpected_error", message)

    def _stale_before(self) -> datetime:
        return self.clock() - timedelta(minutes=self.stale_claim_minutes)

    def _create_in_crm(self, f_id: int) -> None:
        """Copy a Fakturownia client to the CRM under the claim `fakturownia:<id>` (shared with invoices)."""
        key = f"fakturownia:{f_id}"
        f_raw = self._f[f_id]
        if not self.store.claim_crm_client(key, self.owner):
            claimed_id, claimed_by, _at = self.store.crm_client_claim(key) or (None, "", None)
            if claimed_id is not None:
                self._link_created(f_id, int(claimed_id), "created")
                return
            if not self.store.take_over_crm_client_claim(key, self.owner, stale_before=self._stale_before()):
                log.info("Fakturownia client %s: run %s is creating its CRM client right now", f_id, claimed_by)
                self.summary.deferred += 1
                return
            # Ours or a dead run's. Had that create reached the CRM, this run's full CRM read would have
            # shown the client with our external id and the matcher would have linked it: create it.
        crm_department = self.departments.to_crm(_optional_int(f_raw.get("department_id")))
        fields = crm_client_fields(
            Party.from_client(f_raw),
            fakturownia_client_id=f_id,
            crm_department_id=crm_department if self.departments.synced else None,
        )
        try:
            created = self.crm.create_client(fields)
        except AmbiguousWriteError as exc:
            log.warning("Fakturownia client %s: %s; the next try looks for it before creating again", f_id, exc)
            self.summary.unconfirmed += 1
            return
        except ApiRejected:
            self.store.release_crm_client_claim(key)  # refused: nothing was created
            raise
        c_id = int(created["id"])
        self.store.confirm_crm_client(key, c_id)
        self._c[c_id] = _trim(created, CRM_RECORD_FIELDS)
        self.summary.created_in_crm += 1
        self._link_created(f_id, c_id, "created")

    def _create_in_fakturownia(self, c_id: int) -> None:
        """Copy a CRM client to Fakturownia under the claim `crm:<id>`; `external_id` names the CRM client."""
        key = f"crm:{c_id}"
        c_raw = self._c[c_id]
        if not self.store.claim_fakturownia_client(key, self.owner):
            claimed_id, claimed_by, _at = self.store.fakturownia_client_claim(key) or (None, "", None)
            if claimed_id is not None:
                self._link_created(int(claimed_id), c_id, "created")
                return
            if not self.store.take_over_fakturownia_client_claim(key, self.owner, stale_before=self._stale_before()):
                log.info("CRM client %s: run %s is creating its Fakturownia client right now", c_id, claimed_by)
                self.summary.deferred += 1
                return
            found = fakturownia_clients_by_external_id(self.fakturownia, str(c_id))
            if len(found) > 1:
                ids = tuple(int(r["id"]) for r in found)
                self._add_review(CRM, c_id, "ambiguous_external_id", _message("ambiguous_external_id", CRM, c_id, ids))
                return
            if found:
                record = _trim(found[0], MIRROR_FIELDS)
                self._remember_fakturownia(record)
                self.store.confirm_fakturownia_client(key, int(record["id"]))
                self.summary.creates_recovered += 1
                self._link_created(int(record["id"]), c_id, "external_id")
                return
        f_department = self.departments.to_fakturownia(_optional_int(c_raw.get("department_id")))
        fields = fakturownia_client_fields(
            c_raw, crm_client_id=c_id, fakturownia_department_id=f_department, departments=self.departments.synced
        )
        try:
            created = self.fakturownia.create_client(fields)
        except AmbiguousWriteError as exc:
            log.warning("CRM client %s: %s; the next try looks for it before creating again", c_id, exc)
            self.summary.unconfirmed += 1
            return
        except ApiRejected:
            self.store.release_fakturownia_client_claim(key)
            raise
        record = _trim(created, MIRROR_FIELDS)
        self.store.confirm_fakturownia_client(key, int(record["id"]))
        self._remember_fakturownia(record)
        self.summary.created_in_fakturownia += 1
        self._link_created(int(record["id"]), c_id, "created")

    def _remember_fakturownia(self, record: dict[str, Any]) -> None:
        self._f[int(record["id"])] = record
        self._mirror_updates.append((record, parse_timestamp(record.get("updated_at"))))

    def _link_created(self, f_id: int, c_id: int, evidence: str) -> None:
        """Link a pair one side of which was just created, with both sides' values as the snapshot."""
        f_raw, c_raw = self._f.get(f_id), self._c.get(c_id)
        snapshot = snapshot_of(client_view(f_raw), client_view(c_raw)) if f_raw and c_raw else None
        if not self.store.link_clients(f_id, c_id, evidence, snapshot):
            existing = self.store.client_link(f_id)
            if existing is None or existing.crm_client_id != c_id:
                message = (
                    f"Fakturownia client {f_id} and CRM client {c_id} belong together, but one is linked elsewhere"
                )
                self._add_review(FAKTUROWNIA, f_id, "duplicate_of_linked", message, c_raw)
            return
        self._links_f[f_id] = ClientLink(f_id, c_id, evidence, snapshot)
        self._linked_c.add(c_id)

    # Suggestions for the review list -------------------------------------------------------------------

    def _suggest_for_review(self) -> None:
        """Add look-alikes by name and place to review entries that have no candidates yet."""
        bare = [entry for entry in self._review.values() if not entry.suggestions]
        if not bare:
            return
        f_ids = [e.fakturownia_client_id for e in bare if e.subject.startswith(FAKTUROWNIA) and e.fakturownia_client_id]
        c_ids = [e.crm_client_id for e in bare if e.subject.startswith(CRM) and e.crm_client_id]
        f_all, c_all = self._places(self._f), self._places(self._c)
        found_f = similar_names(f_all[f_all["id"].isin(f_ids)], c_all)
        found_c = similar_names(c_all[c_all["id"].isin(c_ids)], f_all)
        for entry in bare:
            side, _, raw_id = entry.subject.partition(":")
            found = (found_f if side == FAKTUROWNIA else found_c).get(int(raw_id), [])
            if not found:
                continue
            others, other_side = (self._c, CRM) if side == FAKTUROWNIA else (self._f, FAKTUROWNIA)
            suggestions = [{"side": other_side, "id": i, "score": s, **_brief(others.get(i))} for i, s in found]
            self._review[entry.subject] = ReviewEntry(**{**entry.as_row(), "suggestions": suggestions})


def _optional_int(value: Any) -> int | None:
    if value in (None, "") or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _brief(record: dict[str, Any] | None) -> dict[str, Any]:
    """The fields a person needs to recognise a client in a suggestion."""
    if not record:
        return {}
    return {name: record.get(name) for name in ("name", "tax_no", "email", "post_code", "city")}


def _message(reason: str, side: str, record_id: int, candidates: tuple[int, ...]) -> str:
    own = "Fakturownia" if side == FAKTUROWNIA else "CRM"
    other = "CRM" if side == FAKTUROWNIA else "Fakturownia"
    listed = ", ".join(str(c) for c in candidates[:10]) or "many"
    if reason.startswith("ambiguous_"):
        evidence = reason.removeprefix("ambiguous_").replace("_", " ")
        return f"{own} client {record_id}: its {evidence} matches more than one client ({other} {listed})"
    if reason == "duplicate_of_linked":
        return f"{own} client {record_id} matches {other} client(s) {listed}, already linked to another client"
    if reason.startswith("duplicate_in_"):
        return f"{own} client {record_id} has the same NIP or e-mail as {own} client(s) {listed}"
    return f"{own} client {record_id}: {reason}"
