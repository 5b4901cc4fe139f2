"""Every qualifying Fakturownia invoice becomes exactly one CRM deal: the incremental sweep and its writes.

When the cursor advances
    Fakturownia has no "changed since" filter, so we read invoices newest-updated first (`period=all`)
    and stop at the first page that ends before `cursor - lookback`. Once the run has handled everything
    (no write left unconfirmed or deferred) the cursor moves to the run's start: every invoice updated
    before it was read and written. Not to the newest `updated_at` seen, which can lie hours back and would
    make every later run re-read those hours. Invoices edited during the run, and any that offset paging
    over a moving list skipped, fall inside the next run's `lookback_minutes` (keep it above any clock
    difference between Fakturownia and the workers). A failed run leaves the cursor where it was.

How "exactly one deal" survives retries and crashes
    Before creating a deal we insert a *pending* row for the invoice (unique key on the invoice id) and
    send the deal with `external_ids.fakturownia_invoice_id`. If the process dies between the CRM's
    answer and our commit, or the create's answer is lost, the row stays pending. Whoever next meets a
    pending row scans the CRM's deals once for that external id and links what it finds; only when the
    CRM has no such deal is it created again. Claims belong to a DAG run, so a retry of the same run takes
    over its own claims at once; another run waits until a claim is `stale_claim_minutes` old.

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
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fakturownia_sync.client_fields import crm_client_fields
from fakturownia_sync.client_matching import CrmClientIndex, Evidence
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY, build_deal, payload_hash
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
from fakturownia_sync.records import Invoice, Party, parse_invoice, parse_timestamp
from fakturownia_sync.redaction import redact
from fakturownia_sync.run_summary import RunSummary
from fakturownia_sync.state import DealLink, QuarantineEntry, StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of
from fakturownia_sync.tax_numbers import check_tax_number, normalise_email

log = logging.getLogger(__name__)

STREAM = "invoices_to_deals"
RECOVERY_ROUNDS = 5
CLIENT_CREATE_ATTEMPTS = 3
# After this many single client-card reads in one run, read all client cards page by page instead.
CLIENT_CARDS_BULK_AFTER = 50


class RecordDeferred(SyncError):
    """Another live run is writing this record right now; it is left for a later run, not quarantined."""


class UnconfirmedWrites(SyncError):
    """Some creates could not be confirmed either way; the run fails so that a retry settles them."""


class KeyedLocks:
    """One lock per key (e.g. per client), so threads working on different keys never wait on each other."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, *keys: str) -> Iterator[None]:
        """Hold the locks of all `keys`, taken in sorted order so that two holders never deadlock."""
        with self._guard:
            locks = [self._locks.setdefault(key, threading.Lock()) for key in sorted(set(keys))]
        for lock in locks:
            lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(locks):
                lock.release()


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
        stale_claim_minutes: int = 15,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.config = config
        self.owner = owner
        self.dry_run = dry_run
        self.invoice_kinds = list(invoice_kinds or config.invoice_kinds)
        self.concurrency = config.crm_write_concurrency
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self.summary = RunSummary(stream=STREAM, dry_run=dry_run)
        self._lock = threading.Lock()
        self._client_locks = KeyedLocks()
        self._crm_clients: CrmClientIndex | None = None
        self._created_clients: list[dict[str, Any]] = []
        self._dry_run_links: set[int] = set()
        self._deals_by_invoice: dict[int, int] | None = None
        self._fakturownia_clients: dict[int, dict[str, Any] | None] = {}
        self._client_card_reads = 0
        self._all_client_cards_read = False
        self._dry_run_ids: dict[str, int] = {}
        self._unconfirmed: dict[int, tuple[Invoice, dict[str, Any], str]] = {}
        self._secrets = (fakturownia.account.token, crm.account.token)

    # Runs ----------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """The incremental run: invoices changed since the cursor (minus the lookback)."""
        cursor = self.store.get_cursor(STREAM)
        threshold = cursor - timedelta(minutes=self.config.lookback_minutes) if cursor else None
        self.summary.cursor_before = cursor.isoformat() if cursor else None
        return self._run(self.fakturownia.iter_invoice_pages_by_update(), threshold, advance_from=cursor)

    def run_window(self, date_from: date, date_to: date) -> dict[str, Any]:
        """A backfill window: invoices issued in [date_from, date_to]. The cursor is not touched."""
        self.summary.window = f"{date_from.isoformat()}..{date_to.isoformat()}"
        pages = self.fakturownia.iter_invoice_pages_issued_between(
            date_from.isoformat(), date_to.isoformat(), kinds=self.invoice_kinds
        )
        return self._run(pages, None, advance_from=None, keep_cursor=True)

    def _run(
        self,
        pages: Iterable[list[dict[str, Any]]],
        threshold: datetime | None,
        *,
        advance_from: datetime | None,
        keep_cursor: bool = False,
    ) -> dict[str, Any]:
        started, started_clock = self.clock(), time.monotonic()
        summary = self.summary
        run_id = None if self.dry_run else self.store.start_run(STREAM, self.owner)
        cursor = advance_from
        try:
            handled = self._process(pages, threshold)
            if not keep_cursor:
                self._retry_quarantined(handled)
            if not self.dry_run:
                self._settle_pending(handled)
            if summary.deals_unconfirmed or summary.deals_deferred:
                summary.status = "incomplete"
            else:
                summary.status = "success"
                if not keep_cursor and not self.dry_run and (cursor is None or started > cursor):
                    self.store.set_cursor(STREAM, started)
                    cursor = started
        except BaseException as exc:
            summary.status = "failed"
            self._finish(run_id, started_clock, cursor, error=redact(str(exc), self._secrets))
            raise
        self._finish(run_id, started_clock, cursor)
        if summary.deals_unconfirmed:
            raise UnconfirmedWrites(
                f"{summary.deals_unconfirmed} deal create(s) could not be confirmed after "
                f"{RECOVERY_ROUNDS} lookups; the cursor was not advanced and the next try will settle them"
            )
        return summary.to_dict()

    def _finish(
        self, run_id: int | None, started_clock: float, cursor: datetime | None, error: str | None = None
    ) -> None:
        summary = self.summary
        summary.cursor_after = cursor.isoformat() if cursor else None
        summary.duration_seconds = round(time.monotonic() - started_clock, 3)
        summary.api_calls = {"fakturownia": self.fakturownia.transport.calls, "sugester": self.crm.transport.calls}
        summary.api_retries = {
            "fakturownia": self.fakturownia.transport.retries,
            "sugester": self.crm.transport.retries,
        }
        summary.quarantine_open = self.store.open_quarantine_counts(STREAM)
        if run_id is not None:
            self.store.finish_run(run_id, summary.status, summary.to_dict(), error)

    def _process(self, pages: Iterable[list[dict[str, Any]]], threshold: datetime | None) -> set[int]:
        """Handle each invoice of the pages once, `concurrency` at a time, at most two pages in flight.

        With a threshold (the incremental sweep, newest-updated first) invoices older than it are passed
        over and reading stops at the first page that ends before it. Returns the ids handled.
        """
        handled: set[int] = set()
        in_flight: deque[list[Future]] = deque()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="crm-writer") as pool:
            try:
                for page in pages:
                    batch = []
                    quarantined = self.store.open_quarantine_for(STREAM, [raw.get("id") for raw in page])
                    for raw in page:
                        record_id = raw.get("id")
                        if record_id in handled:
                            continue  # offset paging over a moving list can repeat an item
                        updated = parse_timestamp(raw.get("updated_at"))
                        if threshold is not None and updated is not None and updated < threshold:
                            continue
                        handled.add(record_id)
                        entry = quarantined.get(str(record_id))
                        if entry is not None and self._same_as_quarantined(entry, raw):
                            self.summary.add("invoices_seen")
                        else:
                            batch.append(pool.submit(self.handle, raw))
                    in_flight.append(batch)
                    if len(in_flight) > 1:
                        _wait_all(in_flight.popleft())
                    last = parse_timestamp(page[-1].get("updated_at")) if page else None
                    if threshold is not None and last is not None and last < threshold:
                        break
                while in_flight:
                    _wait_all(in_flight.popleft())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return handled

    def _retry_due(self, entry: QuarantineEntry) -> bool:
        due_before = self.clock() - timedelta(minutes=self.config.quarantine_retry_minutes)
        return entry.config_fingerprint != self.config.fingerprint() or entry.last_seen_at <= due_before

    def _same_as_quarantined(self, entry: QuarantineEntry, raw: dict[str, Any]) -> bool:
        """The sweep meets this unchanged, quarantined invoice again: nothing new to try yet."""
        unchanged = isinstance(entry.payload, dict) and entry.payload.get("updated_at") == raw.get("updated_at")
        return unchanged and not self._retry_due(entry)

    def _retry_quarantined(self, seen: set[int]) -> None:
        """Give records put aside earlier another go from their stored payload.

        An invoice edited at the source comes back through the sweep with its fresh version. The rest are
        retried when the config changed (e.g. a department was mapped) or every `quarantine_retry_minutes`
        (e.g. a client card fixed, a CRM-side problem gone), so a run with nothing new stays cheap.
        """
        # Read in id order, a batch at a time: a retried entry resolves or is updated in place, so the
        # batches that follow are not shifted by it.
        for entry in self.store.iter_open_quarantine(STREAM):
            if not isinstance(entry.payload, dict) or entry.payload.get("id") in seen:
                continue
            if self._retry_due(entry):
                self.summary.add("quarantine_retried")
                self.handle(entry.payload, retry=True)

    # One invoice ---------------------------------------------------------------------------------------

    def handle(self, raw: dict[str, Any], *, retry: bool = False) -> None:
        """Bring one invoice's deal up to date, or quarantine the invoice with a reason."""
        summary = self.summary
        if not retry:
            summary.add("invoices_seen")
        record_id = raw.get("id")
        try:
            outcome = self._handle(raw)
        except RecordDeferred as exc:
            log.info("%s; left for a later run", exc)
            summary.add("deals_deferred")
            return
        except RecordError as exc:
            self._quarantine(record_id, exc.reason, exc.message, raw)
            return
        except ApiRejected as exc:
            self._quarantine(record_id, f"{exc.api.lower()}_rejected", exc.message, raw)
            return
        except (ApiAuthError, ApiUnavailable):
            raise
        except Exception as exc:
            log.exception("invoice %s: unexpected error", record_id)
            self._quarantine(record_id, "unexpected_error", redact(f"{type(exc).__name__}: {exc}", self._secrets), raw)
            return
        if outcome and not self.dry_run and self.store.resolve_quarantine(STREAM, record_id):
            summary.add("quarantine_resolved")

    def _quarantine(self, record_id: Any, reason: str, message: str, raw: dict[str, Any]) -> None:
        if record_id in (None, ""):  # one entry per such record, not one shared "None" entry
            record_id = "no-id-" + payload_hash(raw)[:16]
        log.warning("invoice %s quarantined: %s: %s", record_id, reason, message)
        self.summary.add_to("quarantined_by_reason", reason)
        if not self.dry_run:
            self.store.quarantine(STREAM, record_id, reason, message, raw, self.config.fingerprint())

    def _handle(self, raw: dict[str, Any]) -> bool:
        """Returns True once the invoice is fully handled (written, unchanged or deliberately skipped)."""
        invoice = parse_invoice(raw)
        summary = self.summary
        if not invoice.income:
            summary.add("skipped_cost")
            return True
        if invoice.kind not in self.invoice_kinds:
            summary.add_to("skipped_by_kind", invoice.kind)
            return True
        link = self.store.deal_link(invoice.id)
        if invoice.cancelled and link is None:
            summary.add("skipped_cancelled")
            return True
        mapped, crm_department_id = self.config.crm_department_for(invoice.department_id)
        if not mapped:
            raise RecordError(
                "unmapped_department",
                f"invoice {invoice.id} is in Fakturownia department {invoice.department_id}, "
                "which department_map does not pair with a CRM department",
            )
        deal = build_deal(
            invoice,
            crm_client_id=self._crm_client_for(invoice),
            crm_department_id=crm_department_id,
            amount=self.config.deal_amount,
            invoice_url=self.fakturownia.invoice_url(invoice.id),
        )
        return self._write_deal(invoice, link, deal, payload_hash(deal))

    # Deals ---------------------------------------------------------------------------------------------

    def _write_deal(self, invoice: Invoice, link: DealLink | None, deal: dict[str, Any], digest: str) -> bool:
        summary = self.summary
        if self.dry_run:
            if link is None or link.state != "linked":
                summary.add("deals_created")  # would be created
            else:
                summary.add("deals_unchanged" if link.payload_hash == digest else "deals_updated")
            return True
        if link is not None and link.state == "linked":
            if link.payload_hash == digest:
                summary.add("deals_unchanged")
                return True
            self._update_deal(invoice, link.deal_id, deal, digest)
            return True
        if link is None:
            if self.store.claim_invoice(invoice.id, self.owner, digest):
                return self._create_deal(invoice, deal, digest)
            link = self.store.deal_link(invoice.id)  # a concurrent run got there first
            if link is None or link.state == "linked":
                return self._write_deal(invoice, link, deal, digest)
        stale_before = self.clock() - timedelta(minutes=self.stale_claim_minutes)
        if not self.store.take_over_claim(invoice.id, self.owner, digest, stale_before=stale_before):
            raise RecordDeferred(f"invoice {invoice.id}: run {link.claimed_by} is creating its deal right now")
        existing = self._deal_index().get(invoice.id)
        if existing is not None:
            self.store.confirm_deal(invoice.id, existing, link.payload_hash, invoice.updated_at)
            self.summary.add("deals_recovered")
            if link.payload_hash != digest:
                self._update_deal(invoice, existing, deal, digest)
            return True
        return self._create_deal(invoice, deal, digest)

    def _create_deal(self, invoice: Invoice, deal: dict[str, Any], digest: str) -> bool:
        try:
            created = self.crm.create_deal(deal)
        except AmbiguousWriteError as exc:
            log.warning("invoice %s: %s; will look the deal up before creating it again", invoice.id, exc)
            with self._lock:
                self._unconfirmed[invoice.id] = (invoice, deal, digest)
            return False
        except ApiRejected:
            self.store.release_claim(invoice.id)  # the CRM refused it: nothing was created
            raise
        deal_id = int(created["id"])
        self.store.confirm_deal(invoice.id, deal_id, digest, invoice.updated_at)
        with self._lock:
            if self._deals_by_invoice is not None:
                self._deals_by_invoice[invoice.id] = deal_id
            self._unconfirmed.pop(invoice.id, None)
        self.summary.add("deals_created")
        return True

    def _update_deal(self, invoice: Invoice, deal_id: int | None, deal: dict[str, Any], digest: str) -> None:
        try:
            self.crm.update_deal(int(deal_id), deal)
        except ApiNotFound:
            raise RecordError(
                "deal_deleted_in_crm",
                f"deal {deal_id} of invoice {invoice.id} no longer exists in the CRM; it is not recreated",
            ) from None
        self.store.record_deal_payload(invoice.id, digest, invoice.updated_at)
        self.summary.add("deals_updated")

    def _deal_index(self, *, reload: bool = False) -> dict[int, int]:
        """invoice id → deal id, from one scan of the CRM's deals; only needed to settle pending creates."""
        with self._lock:
            if self._deals_by_invoice is None or reload:
                index: dict[int, int] = {}
                for deal in self.crm.iter_deals():
                    invoice_id = external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)
                    if invoice_id and invoice_id.isdigit():
                        index.setdefault(int(invoice_id), int(deal["id"]))
                self._deals_by_invoice = index
            return self._deals_by_invoice

    def _settle_pending(self, seen: set[int]) -> None:
        """Confirm or redo every create of ours (or a dead run's) whose outcome is not known yet."""
        for _round in range(RECOVERY_ROUNDS):
            stale_before = self.clock() - timedelta(minutes=self.stale_claim_minutes)
            pending = [
                link
                for link in self.store.pending_deal_links()
                if link.claimed_by == self.owner or (link.claimed_at and link.claimed_at < stale_before)
            ]
            if not pending:
                break
            index = self._deal_index(reload=True)
            for link in pending:
                if link.invoice_id in index:
                    invoice = self._unconfirmed.pop(link.invoice_id, (None, None, None))[0]
                    updated_at = invoice.updated_at if invoice else None
                    self.store.confirm_deal(link.invoice_id, index[link.invoice_id], link.payload_hash, updated_at)
                    self.summary.add("deals_recovered")
                elif link.invoice_id in self._unconfirmed:
                    invoice, deal, digest = self._unconfirmed[link.invoice_id]
                    try:
                        self._create_deal(invoice, deal, digest)
                    except ApiRejected as exc:
                        with self._lock:
                            self._unconfirmed.pop(invoice.id, None)
                        self._quarantine(invoice.id, f"{exc.api.lower()}_rejected", exc.message, invoice.raw)
                elif link.invoice_id not in seen:
                    self._rehandle(link.invoice_id)
                    seen.add(link.invoice_id)
                else:
                    self.store.release_claim(link.invoice_id)  # met this run and not to be created after all
        self.summary.deals_unconfirmed = len(self._unconfirmed)

    def _rehandle(self, invoice_id: int) -> None:
        """A pending claim left by a dead run for an invoice this sweep did not meet: fetch it and finish."""
        try:
            raw = self.fakturownia.get_invoice(invoice_id)
        except ApiNotFound:
            self.store.release_claim(invoice_id)  # the invoice is gone and no deal was created for it
            return
        self.handle(raw, retry=True)

    # Clients -------------------------------------------------------------------------------------------

    def _crm_clients_index(self, *, reload: bool = False) -> CrmClientIndex:
        """All CRM clients, read once per run and only when an invoice needs a client not linked yet."""
        with self._lock:
            if self._crm_clients is None or reload:
                index = CrmClientIndex(self.crm.iter_clients())
                for created in self._created_clients:  # created by other threads while the scan ran
                    index.add(created)
                self._crm_clients = index
            return self._crm_clients

    def _fakturownia_client(self, client_id: int) -> dict[str, Any] | None:
        """A client card, read one by one while few are needed, then all at once page by page."""
        with self._lock:
            if client_id in self._fakturownia_clients:
                return self._fakturownia_clients[client_id]
            if self._client_card_reads >= CLIENT_CARDS_BULK_AFTER and not self._all_client_cards_read:
                for page in self.fakturownia.iter_client_pages_by_update():
                    self._fakturownia_clients.update({int(card["id"]): card for card in page})
                self._all_client_cards_read = True
                if client_id in self._fakturownia_clients:
                    return self._fakturownia_clients[client_id]
            self._client_card_reads += 1
        try:
            card = self.fakturownia.get_client(client_id)
        except ApiNotFound:
            card = None
        with self._lock:
            self._fakturownia_clients[client_id] = card
        return card

    def _crm_client_for(self, invoice: Invoice) -> int:
        """The CRM client the invoice's deal belongs to: linked, matched, or created now."""
        fakturownia_id = invoice.client_id
        if fakturownia_id is not None:
            link = self.store.client_link(fakturownia_id)
            if link is not None:
                return link.crm_client_id
            raw_client = self._fakturownia_client(fakturownia_id)
            party = Party.from_client(raw_client) if raw_client else invoice.buyer
            if raw_client is None:
                fakturownia_id = None  # the client card is gone: match by the buyer block alone
        else:
            party = invoice.buyer
        if party.is_empty:
            raise RecordError("no_client", f"invoice {invoice.id} has no client and no buyer data")
        tax = check_tax_number(party.tax_no)
        if tax.present and not tax.valid:
            raise RecordError("invalid_nip", f"invoice {invoice.id}: buyer NIP {party.tax_no!r} is not a valid NIP")
        email = normalise_email(party.email)
        if fakturownia_id is None and tax.key is None and email is None:
            raise RecordError(
                "no_client",
                f"invoice {invoice.id} has no client card and its buyer has neither a NIP nor an e-mail; "
                "a CRM client is not created from a name alone",
            )
        hint = int(party.external_id) if party.external_id.isdigit() else None
        evidence = Evidence(fakturownia_id, hint, tax.key, email, name=party.name, post_code=party.post_code)
        # One company can be reached by its card, its NIP and its e-mail: hold all three, so that two threads
        # holding different evidence of the same company never both create it.
        with self._client_locks.hold(*evidence_keys(evidence)):
            return self._match_or_create(invoice, party, evidence)

    def _match(self, invoice: Invoice, evidence: Evidence, *, reload: bool = False) -> tuple[int | None, str]:
        match = self._crm_clients_index(reload=reload).match(evidence)
        if match.ambiguous:
            raise RecordError(
                "ambiguous_client",
                f"invoice {invoice.id}: {match.evidence} matches CRM clients {list(match.candidates)}",
            )
        return match.crm_client_id, match.evidence

    def _match_or_create(self, invoice: Invoice, party: Party, evidence: Evidence) -> int:
        """Link a matching CRM client, or create one under a claim so that no two attempts both create it."""
        crm_id, how = self._match(invoice, evidence)
        if crm_id is not None:
            self._link(invoice, evidence, crm_id, how)
            return crm_id
        key = claim_key(evidence)
        if self.dry_run:
            return self._would_create_client(key)
        if not self.store.claim_crm_client(key, self.owner):
            claimed_id, claimed_by, _at = self.store.crm_client_claim(key) or (None, "", None)
            if claimed_id is not None:  # created by an earlier or a concurrent run
                self._link(invoice, evidence, claimed_id, "created")
                return claimed_id
            stale_before = self.clock() - timedelta(minutes=self.stale_claim_minutes)
            if not self.store.take_over_crm_client_claim(key, self.owner, stale_before=stale_before):
                raise RecordDeferred(f"invoice {invoice.id}: run {claimed_by} is creating its CRM client right now")
            crm_id, how = self._match(invoice, evidence, reload=True)  # did the earlier attempt get through?
            if crm_id is not None:
                self.store.confirm_crm_client(key, crm_id)
                self._link(invoice, evidence, crm_id, how)
                return crm_id
        _mapped, crm_department_id = self.config.crm_department_for(party.department_id)
        fields = crm_client_fields(
            party, fakturownia_client_id=evidence.fakturownia_client_id, crm_department_id=crm_department_id
        )
        for _attempt in range(CLIENT_CREATE_ATTEMPTS):
            try:
                created = self.crm.create_client(fields)
            except AmbiguousWriteError as exc:
                log.warning("invoice %s: %s; re-reading CRM clients before creating again", invoice.id, exc)
                crm_id, how = self._match(invoice, evidence, reload=True)
                if crm_id is None:
                    continue
            except ApiRejected:
                self.store.release_crm_client_claim(key)  # refused: nothing was created
                raise
            else:
                crm_id, how = int(created["id"]), "created"
                with self._lock:
                    self._created_clients.append(created)
                self._crm_clients_index().add(created)
                self.summary.add("clients_created")
            self.store.confirm_crm_client(key, crm_id)
            self._link(invoice, evidence, crm_id, how)
            return crm_id
        raise ApiUnavailable(
            self.crm.account.api,
            f"could not confirm the CRM client for invoice {invoice.id} after {CLIENT_CREATE_ATTEMPTS} attempts",
        )

    def _would_create_client(self, key: str) -> int:
        """Dry run: count the CRM client that would be created and stand in a placeholder id for it."""
        with self._lock:
            if key not in self._dry_run_ids:
                self._dry_run_ids[key] = -(len(self._dry_run_ids) + 1)
                self.summary.add("clients_created")
            return self._dry_run_ids[key]

    def _link(self, invoice: Invoice, evidence: Evidence, crm_id: int, how: str) -> None:
        """Record the one-to-one client link; a CRM client already linked elsewhere goes to review."""
        fakturownia_id = evidence.fakturownia_client_id
        if fakturownia_id is None:
            return  # a buyer without a client card: matched again by NIP/e-mail next time
        if self.dry_run:
            with self._lock:
                first_time = fakturownia_id not in self._dry_run_links
                self._dry_run_links.add(fakturownia_id)
            if first_time:
                self.summary.add("clients_linked")
            return
        if not self.store.link_clients(fakturownia_id, crm_id, how):
            existing = self.store.client_link(fakturownia_id)
            if existing is not None and existing.crm_client_id == crm_id:
                return  # a concurrent run linked the same pair a moment ago
            raise RecordError(
                "ambiguous_client",
                f"invoice {invoice.id}: Fakturownia client {fakturownia_id} matches CRM client {crm_id} by {how}, "
                "but one of them is already linked to another client",
            )
        if how != "created":
            self.summary.add("clients_linked")


def evidence_keys(evidence: Evidence) -> list[str]:
    keys = [f"fakturownia:{evidence.fakturownia_client_id}"] if evidence.fakturownia_client_id is not None else []
    keys += [f"nip:{evidence.tax_key}"] if evidence.tax_key else []
    keys += [f"email:{evidence.email}"] if evidence.email else []
    return keys or [claim_key(evidence)]


def claim_key(evidence: Evidence) -> str:
    """What a CRM client create is claimed under: the Fakturownia client, else the buyer's NIP or e-mail."""
    if evidence.fakturownia_client_id is not None:
        return f"fakturownia:{evidence.fakturownia_client_id}"
    if evidence.tax_key:
        return f"nip:{evidence.tax_key}"
    return f"email:{evidence.email}"


def _wait_all(futures: list[Future]) -> None:
    """Wait for a page's invoices; the first error (an unreachable or refusing API) fails the run."""
    for future in futures:
        future.result()
