"""The two-way client sync: one client base in Fakturownia and the CRM, deduplicated, with departments.

What a run reads
    Fakturownia by the `updated_at` sweep (newest first, down to `cursor - lookback`, `sweep.Sweep`, the
    one the invoices sync uses), into a mirror of every Fakturownia client kept in the state DB: matching
    needs the whole base, since a new client may duplicate an unchanged one. The CRM documents no ordering
    and no "changed since", so every run reads all CRM clients (twice, united by id, `sweep.read_twice`: a
    client created or deleted during the read can push another over a page boundary unseen, and the CRM's
    order is not promised, so the overlap check of the sweep cannot be relied on there) and finds changes
    by content against the last synced snapshot. With `full`, both sides are read completely (the mirror
    is rebuilt) and the run still writes nothing where nothing differs. Whether Fakturownia honours
    `order=updated_at.desc` for clients is not documented: the sweep checks the order it gets and reads to
    the end when it is not descending. A list that keeps moving while it is read fails the run
    (`sweep.ListMoved`) and the cursor stays.

When the cursor advances
    To the run's start once the whole range was read and every write is settled (`sweep.advanced_cursor`),
    never past it, never after a failure; clients edited during the run fall inside the next lookback.

What a run decides, in order
    1. matching, over both whole bases (`bulk_matching`): new links, review entries, unmatched records;
    2. the field-by-field merge of every linked pair against its snapshot (`client_merge`), writes both ways,
       conflicts settled by `conflict_policy` and recorded;
    3. creates: an unmatched Fakturownia client becomes a CRM client carrying
       `external_ids.fakturownia_client_id`; an unmatched CRM client becomes a Fakturownia client carrying
       `external_id` = the CRM id; each through `claims.create_under_claim` on every evidence key of the
       company (`fakturownia:<id>` or `crm:<id>`, its NIP and e-mail: the keys the invoices and deals syncs
       claim too, so two processes reaching one company by different evidence never both create it);
    4. the review list is replaced by what this run found (`review`); entries no longer found resolve.
    The writes of 2 and 3 are decided serially, sent `crm_write_concurrency` at a time, and applied in order
    (`client_writes`): latency, not the rate limit, would otherwise pace a backfill's thousands of writes.
    Before 1, the decisions a person made on the review list are applied (`review_decisions_apply`): a link a
    person made is merged in step 2, a pair told apart is kept apart by step 1 and created in step 3, an ignored
    entry stays closed in step 4 while its evidence is the same.

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
from fakturownia_sync.claims import CRM_CLIENT, FAKTUROWNIA_CLIENT
from fakturownia_sync.client_bases import CRM_RECORD_FIELDS, MIRROR_FIELDS, ClientBases, trim
from fakturownia_sync.client_creation import ClientCreation
from fakturownia_sync.client_review_builder import ReviewBuilder
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import SyncError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.linked_clients_merge import LinkedClientsMerge
from fakturownia_sync.records import parse_timestamp
from fakturownia_sync.redaction import redact
from fakturownia_sync.review_decisions_apply import ReviewDecisions
from fakturownia_sync.run_summary import ApiCalls, api_calls
from fakturownia_sync.state import ClientLink, CreateClaim, StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.sweep import Sweep, advanced_cursor, read_twice
from fakturownia_sync.timing import STALE_CLAIM_MINUTES

log = logging.getLogger(__name__)

STREAM = "clients_sync"


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
    from_documents_not_copied: int = 0  # CRM clients made for anonymous buyers: never copied as client cards
    creates_recovered: int = 0
    updated_in_crm: int = 0
    updated_in_fakturownia: int = 0
    conflicts: int = 0
    conflicts_by_field: Counter = field(default_factory=Counter)
    review_by_reason: dict[str, int] = field(default_factory=dict)
    review_opened: int = 0
    review_resolved: int = 0
    review_decisions_applied: int = 0  # a person's decisions on the review list (`review_decisions_apply`)
    review_decisions_refused: int = 0
    review_decisions_superseded: int = 0
    deferred: int = 0
    unconfirmed: int = 0
    api_calls: ApiCalls = field(default_factory=dict)  # see `run_summary.api_calls`
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
        stale_claim_minutes: int = STALE_CLAIM_MINUTES,
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
        self.summary = ClientsSummary(full=full)
        self._secrets = (fakturownia.account.token, crm.account.token)
        self._api_calls_before = api_calls(fakturownia, crm)  # the clients may have served earlier runs
        self.bases = ClientBases(store)
        self.review = ReviewBuilder(self.bases)
        parts = (fakturownia, crm, store)
        self.merge = LinkedClientsMerge(*parts, config, self.summary, self.bases, self.review, owner=owner)
        self.creation = ClientCreation(
            *parts,
            DepartmentMap(config),
            self.summary,
            self.bases,
            self.review,
            owner=owner,
            stale_claim_minutes=stale_claim_minutes,
            clock=clock,
            concurrency=config.crm_write_concurrency,
        )
        self.decisions = ReviewDecisions(fakturownia, store, self.summary, self.bases, self.review, self.creation)

    # The run -------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started, started_clock = self.clock(), time.monotonic()
        run_id = self.store.start_run(STREAM, self.owner)
        summary = self.summary
        cursor = self.store.get_cursor(STREAM)
        summary.cursor_before = cursor.isoformat() if cursor else None
        try:
            complete = self._read_fakturownia(cursor)
            bases = self.bases
            bases.crm = {crm_id: trim(r, CRM_RECORD_FIELDS) for crm_id, r in read_twice(self.crm.iter_clients).items()}
            summary.crm_clients_read = len(bases.crm)
            bases.fakturownia = {int(r["id"]): r for r in self.store.fakturownia_clients()}
            bases.load_links()
            self.decisions.apply()
            match = match_client_bases(
                fakturownia_frame(bases.fakturownia.values()),
                crm_frame(bases.crm.values()),
                bases.link_pairs(),
                bases.apart,
            )
            self._link_matches(match)
            self.merge.merge_all()
            self.creation.create_unmatched(match)
            bases.flush()
            self.decisions.finish()
            entries = self.review.entries.values()
            rows = (entry.as_row() for entry in entries)
            opened, resolved = self.store.sync_client_review(rows, ignored=self.decisions.in_force_ignores())
            summary.review_opened, summary.review_resolved = opened, resolved
            summary.review_by_reason = dict(sorted(Counter(e.reason for e in entries).items()))
            if summary.unconfirmed or summary.deferred:
                summary.status = "incomplete"
            else:
                moved = advanced_cursor(cursor, started, complete=complete)
                if moved is not None and moved != cursor:
                    self.store.set_cursor(STREAM, moved)
                    cursor = moved
                summary.status = "success"
        except BaseException as exc:
            summary.status = "failed"
            self.bases.flush()
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
        summary.api_calls = api_calls(self.fakturownia, self.crm, since=self._api_calls_before)
        self.store.finish_run(run_id, summary.status, summary.to_dict(), error)

    # Reading -------------------------------------------------------------------------------------------

    def _read_fakturownia(self, cursor: datetime | None) -> bool:
        """Sweep Fakturownia clients newest-updated first into the mirror; True once the range was read whole."""
        full = self.full or cursor is None
        threshold = None if full else cursor - timedelta(minutes=self.config.lookback_minutes)
        sweep = Sweep(self.fakturownia.client_pages_by_update(), threshold=threshold, what="Fakturownia clients")
        records: dict[int, tuple[dict[str, Any], datetime | None]] = {}
        for raw in sweep.records():
            if raw.get("id") is None:
                continue
            records[int(raw["id"])] = (trim(raw, MIRROR_FIELDS), parse_timestamp(raw.get("updated_at")))
        self.store.save_fakturownia_clients(records.values(), replace_all=full)
        self.summary.fakturownia_clients_read = len(records)
        return sweep.complete

    # Matching ------------------------------------------------------------------------------------------

    def _link_matches(self, match: BulkMatch) -> None:
        rows = list(
            zip(match.matches["fakturownia_id"], match.matches["crm_id"], match.matches["evidence"], strict=True)
        )
        linked = set(self.store.link_clients_many([(int(f), int(c), str(e), None) for f, c, e in rows]))
        # Unconfirmed creates (a lost answer, a run that died) by the key that names their source record.
        pending_crm = _by_key(self.store.unconfirmed_creates(CRM_CLIENT), "fakturownia:")
        pending_fakturownia = _by_key(self.store.unconfirmed_creates(FAKTUROWNIA_CLIENT), "crm:")
        for f, c, evidence in rows:
            f, c = int(f), int(c)
            if (f, c) not in linked:
                continue  # linked elsewhere a moment ago (a concurrent invoices run); next run sees it
            self.bases.set_link(ClientLink(f, c, str(evidence), None))
            self.summary.clients_linked += 1
            self.summary.linked_by_evidence[str(evidence)] += 1
            # An earlier attempt's create that did reach the server: its claim is settled now.
            if f"fakturownia:{f}" in pending_crm and self.store.confirm_create(pending_crm[f"fakturownia:{f}"], c):
                self.summary.creates_recovered += 1
            if f"crm:{c}" in pending_fakturownia and self.store.confirm_create(pending_fakturownia[f"crm:{c}"], f):
                self.summary.creates_recovered += 1
        for row in match.review.itertuples(index=False):
            self.review.from_matcher(row.side, int(row.id), row.reason, tuple(row.candidates))


def _by_key(claims: list[CreateClaim], prefix: str) -> dict[str, int]:
    """Claim ids by each of their keys that starts with `prefix` (the source record's own key)."""
    return {key: claim.id for claim in claims for key in claim.keys if key.startswith(prefix)}
