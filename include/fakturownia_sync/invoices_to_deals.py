"""Every qualifying Fakturownia invoice becomes exactly one CRM deal: the run, its sweep and its bookkeeping.

When the cursor advances
    Fakturownia has no "changed since" filter, so we read invoices newest-updated first (`period=all`)
    and stop at the first page that ends before `cursor - lookback`, by the one sweep of `sweep`, which
    also finds invoices that offset paging over a moving list (deletions during the read) would skip, and
    fails with `ListMoved` rather than report success when it cannot. Once the run has read the whole range
    and handled everything (no write left unconfirmed or deferred) the cursor moves to the run's start
    (`sweep.advanced_cursor`). Invoices edited during the run fall inside the next run's `lookback_minutes`
    (keep it above any clock difference between Fakturownia and the workers). A failed run leaves the
    cursor where it was; a backfill window whose list could not be read whole fails, so it is not recorded.

Quarantine retries re-read the invoice
    A quarantined invoice due for a retry is read again from Fakturownia first (never retried from the
    stored copy): one deleted since is resolved with the reason `deleted_in_fakturownia` and gets no deal.

The systems are the source of truth
    With no deal links in the state DB (a new or replaced database), the run first rebuilds the
    invoice→deal links from one scan of the CRM's deals by `external_ids.fakturownia_invoice_id`
    (`DealWriter.rebuild_links`), so nothing is created twice.

Who does what
    This module runs the sweep, the quarantine retries and the upkeep after it (`deal_upkeep`), and moves the
    cursor; `invoice_deal` decides per invoice (kind, cancellation, department, quarantine);
    `invoice_clients` finds or creates the buyer's CRM client; `deal_writer` writes the deal exactly once
    (claims, lost answers, crashes: see its docstring).

Throughput
    Invoices are handled by `crm_write_concurrency` threads, two pages at a time, so CRM writes go out in
    parallel (within the per-process requests-per-minute budget of the transport) while memory stays
    flat: history is streamed page by page, never collected. Work on one client is serialised by a lock
    per client, so two threads never create the same CRM client.

What is never done
    A deleted invoice leaves its deal alone; a deal deleted in the CRM is not recreated (it is reported).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fakturownia_sync.config import SyncConfig
from fakturownia_sync.deal_upkeep import AfterSweep, keep_deals_up
from fakturownia_sync.deal_writer import DealWriter
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import ApiNotFound, SyncError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.ids import as_id
from fakturownia_sync.invoice_clients import InvoiceClients
from fakturownia_sync.invoice_deal import handle_again, handle_invoice
from fakturownia_sync.keyed_locks import KeyedLocks
from fakturownia_sync.quarantine_retry import nothing_new, retry_due
from fakturownia_sync.redaction import redact
from fakturownia_sync.run_summary import RunSummary, api_calls
from fakturownia_sync.state import QuarantineEntry, StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.sweep import Sweep, advanced_cursor
from fakturownia_sync.timing import STALE_CLAIM_MINUTES
from fakturownia_sync.users import ResponsibleUsers

log = logging.getLogger(__name__)

STREAM = "invoices_to_deals"


class UnconfirmedWrites(SyncError):
    """Some creates could not be confirmed either way; the run fails so that a retry settles them."""


class InvoicesToDeals:
    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        config: SyncConfig,
        *,
        owner: str,
        dry_run: bool = False,
        invoice_kinds: list[str] | None = None,
        stale_claim_minutes: int = STALE_CLAIM_MINUTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.config = config
        self.departments = DepartmentMap(config)
        self.owner = owner
        self.dry_run = dry_run
        self.invoice_kinds = list(invoice_kinds or config.invoice_kinds)
        self.concurrency = config.crm_write_concurrency
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self.summary = RunSummary(stream=STREAM, dry_run=dry_run)
        common = {"owner": owner, "dry_run": dry_run, "stale_claim_minutes": stale_claim_minutes, "clock": clock}
        self.clients = InvoiceClients(fakturownia, crm, store, config, self.summary, **common)
        self.deals = DealWriter(crm, store, self.summary, **common)
        self.responsible = ResponsibleUsers(crm, config.fakturownia_users)  # paired on first use
        self.deal_locks = KeyedLocks()  # one invoice's deal at a time: its corrections may rewrite it (`deal_upkeep`)
        self.after_sweep = AfterSweep()  # rebuilt deals written once the sweep has read their corrections
        self.secrets = (fakturownia.account.token, crm.account.token)
        self._api_calls_before = api_calls(fakturownia, crm)  # the clients may have served earlier runs

    # Runs ----------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """The incremental run: invoices changed since the cursor (minus the lookback)."""
        cursor = self.store.get_cursor(STREAM)
        threshold = cursor - timedelta(minutes=self.config.lookback_minutes) if cursor else None
        self.summary.cursor_before = cursor.isoformat() if cursor else None
        sweep = Sweep(self.fakturownia.invoice_pages_by_update(), threshold=threshold, what="invoices by update")
        return self._run(sweep, advance_from=cursor)

    def run_window(self, date_from: date, date_to: date) -> dict[str, Any]:
        """A backfill window: invoices issued in [date_from, date_to]. The cursor is not touched."""
        self.summary.window = f"{date_from.isoformat()}..{date_to.isoformat()}"
        fetch = self.fakturownia.invoice_pages_issued_between(
            date_from.isoformat(), date_to.isoformat(), kinds=self.invoice_kinds
        )
        # Ordered by id, read to its end: no stop rule, so no order to check.
        sweep = Sweep(fetch, order=None, what=f"invoices issued {self.summary.window}")
        return self._run(sweep, advance_from=None, keep_cursor=True)

    def _run(self, sweep: Sweep, *, advance_from: datetime | None, keep_cursor: bool = False) -> dict[str, Any]:
        started, started_clock = self.clock(), time.monotonic()
        summary = self.summary
        run_id = None if self.dry_run else self.store.start_run(STREAM, self.owner)
        cursor = advance_from
        summary.deal_links_rebuilt = summary.quarantine_deleted_at_source = 0
        try:
            if not self.dry_run:
                summary.deal_links_rebuilt = self.deals.rebuild_links()
            handled = self._process(sweep)
            if not keep_cursor:
                self._retry_quarantined(handled)
            keep_deals_up(self, handled, incremental=not keep_cursor)  # deal upkeep: see deal_upkeep
            if not self.dry_run:
                self.deals.settle_pending(handled, rehandle=lambda invoice_id: handle_again(self, invoice_id))
            if summary.deals_unconfirmed or summary.deals_deferred:
                summary.status = "incomplete"
            else:
                summary.status = "success"
                if not keep_cursor and not self.dry_run:
                    moved = advanced_cursor(cursor, started, complete=sweep.complete)
                    if moved != cursor and moved is not None:
                        self.store.set_cursor(STREAM, moved)
                        cursor = moved
        except BaseException as exc:
            summary.status = "failed"
            self._finish(run_id, started_clock, cursor, sweep, error=redact(str(exc), self.secrets))
            raise
        self._finish(run_id, started_clock, cursor, sweep)
        if summary.deals_unconfirmed:
            raise UnconfirmedWrites(
                f"{summary.deals_unconfirmed} deal create(s) got no answer and are not in the CRM yet; the cursor "
                "was not advanced; they are looked up again by the next try and sent again only once they can no "
                f"longer land ({STALE_CLAIM_MINUTES} minutes after their attempt)"
            )
        return summary.to_dict()

    def _finish(
        self, run_id: int | None, started_clock: float, cursor: datetime | None, sweep: Sweep, error: str | None = None
    ) -> None:
        summary = self.summary
        summary.list_reads = {"pages": sweep.reads, "records": sweep.records_read, "restarts": sweep.restarts}
        summary.cursor_after = cursor.isoformat() if cursor else None
        summary.duration_seconds = round(time.monotonic() - started_clock, 3)
        summary.api_calls = api_calls(self.fakturownia, self.crm, since=self._api_calls_before)
        summary.quarantine_open = self.store.open_quarantine_counts(STREAM)
        if run_id is not None:
            self.store.finish_run(run_id, summary.status, summary.to_dict(), error)

    def _process(self, sweep: Sweep) -> set[int]:
        """Handle each invoice the sweep yields, `concurrency` at a time, at most two pages in flight.

        The sweep yields every invoice of its range once (older than its threshold: not at all), including
        those a moving list pushed back over a page boundary. Returns the ids handled.
        """
        handled: set[int] = set()
        in_flight: deque[list[Future]] = deque()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="crm-writer") as pool:
            try:
                for page in sweep.pages():
                    batch = []
                    quarantined = self.store.open_quarantine_for(STREAM, [raw.get("id") for raw in page])
                    for raw in page:
                        record_id = raw.get("id")
                        handled.add(record_id)
                        entry = quarantined.get(str(record_id))
                        if entry is not None and nothing_new(entry, raw, self.config, self.clock()):
                            self.summary.add("invoices_seen")
                        else:
                            batch.append(pool.submit(self.handle, raw))
                    in_flight.append(batch)
                    if len(in_flight) > 1:
                        _wait_all(in_flight.popleft())
                while in_flight:
                    _wait_all(in_flight.popleft())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return handled

    def _retry_quarantined(self, seen: set[int]) -> None:
        """Give records put aside earlier another go, with their current version read from Fakturownia.

        An invoice edited at the source comes back through the sweep with its fresh version. The rest are
        retried when the config changed (e.g. a department was mapped) or every `quarantine_retry_minutes`
        (e.g. a client card fixed, a CRM-side problem gone), so a run with nothing new stays cheap. A retry
        re-reads the invoice first (one GET): the stored copy may be stale, and an invoice deleted since is
        resolved as `deleted_in_fakturownia`, never turned into a deal. Only an entry without a usable id
        (nothing to read it by) is retried from its stored copy.
        """
        # Read in id order, a batch at a time: a retried entry resolves or is updated in place, so the
        # batches that follow are not shifted by it.
        for entry in self.store.iter_open_quarantine(STREAM):
            if not isinstance(entry.payload, dict) or entry.payload.get("id") in seen:
                continue
            if not retry_due(entry, self.config, self.clock()):
                continue
            self.summary.add("quarantine_retried")
            invoice_id = as_id(entry.payload.get("id"))
            if invoice_id is None:
                self.handle(entry.payload, retry=True)
                continue
            try:
                raw = self.fakturownia.get_invoice(invoice_id)
            except ApiNotFound:
                self._resolve_deleted(entry)
                continue
            self.handle(raw, retry=True)

    def _resolve_deleted(self, entry: QuarantineEntry) -> None:
        """A quarantined invoice deleted in Fakturownia since: the entry is resolved with that reason."""
        log.info("invoice %s: deleted in Fakturownia; its quarantine entry is resolved", entry.record_id)
        self.summary.add("quarantine_deleted_at_source")
        self.summary.add("quarantine_resolved")
        if self.dry_run:
            return
        message = f"invoice {entry.record_id} was deleted in Fakturownia while quarantined ({entry.reason}); no deal"
        self.store.quarantine(
            STREAM, entry.record_id, "deleted_in_fakturownia", message, entry.payload, entry.config_fingerprint
        )
        self.store.resolve_quarantine(STREAM, entry.record_id)

    def handle(self, raw: dict[str, Any], *, retry: bool = False) -> None:
        """Bring one invoice's deal up to date, or quarantine the invoice with a reason (`invoice_deal`)."""
        handle_invoice(self, raw, retry=retry)


def _wait_all(futures: list[Future]) -> None:
    """Wait for a page's invoices; the first error (an unreachable or refusing API) fails the run."""
    for future in futures:
        future.result()
