"""Writing one invoice's deal to the CRM exactly once: claim, create, confirm, update, settle what is unknown.

How "exactly one deal" survives retries and crashes
    Before creating a deal we insert a *pending* row for the invoice (unique key on the invoice id) and
    send the deal with `external_ids.fakturownia_invoice_id`. If the process dies between the CRM's
    answer and our commit, or the create's answer is lost, the row stays pending. Whoever next meets a
    pending row scans the CRM's deals once for that external id and links what it finds; only when the
    CRM has no such deal, and the earlier attempt can no longer land, is it created again.

When a create may be sent again
    The earlier attempt can no longer land when the server answered it (`AmbiguousWriteError.may_still_land`
    is False: a 5xx or a garbled body means the server is done with the request, so a look-up that finds
    nothing is final), or when the claim is older than `stale_claim_minutes`, the window that every
    request's hard deadline (`timing`) keeps well clear of. A create held open by a slow server, cut by our
    deadline, or left by a killed worker is therefore never repeated a moment later, not even by the same
    run: the run ends unconfirmed (the cursor stays), and a run after the window looks it up again and
    creates it only if it is still missing.

Links rebuilt from the CRM
    The CRM is the source of truth for which deals exist. When the state DB holds no deal link at all (a
    new, replaced or lost state DB; a fresh install with an empty CRM costs one empty scan per run until
    its first deal), `rebuild_links` scans the CRM's deals once, before anything is written, and links
    every deal carrying `external_ids.fakturownia_invoice_id`, with the hash of what the deal shows now,
    so an unchanged invoice then costs no write. A state DB that lost only some links is not detected
    this way; a lost link's pending claim is settled by the same scan, and a missing one would repeat a
    create only for that invoice.

What is never done
    A deal deleted in the CRM is not recreated: the link records it (`deal_deleted_at`, also set by the daily
    check of `deal_upkeep`), the invoice is quarantined with the reason `deal_deleted_in_crm`, and no later
    write is sent for it. A create is never repeated while its earlier attempt may still land.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY, payload_hash
from fakturownia_sync.errors import AmbiguousWriteError, ApiNotFound, ApiRejected, RecordDeferred, RecordError
from fakturownia_sync.ids import as_id
from fakturownia_sync.records import Invoice
from fakturownia_sync.run_summary import RunSummary
from fakturownia_sync.state import DealLink, StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of

log = logging.getLogger(__name__)

RECOVERY_ROUNDS = 5


class DealWriter:
    """The CRM side of one run: deal creates under claims, updates, and settling creates whose outcome is unknown."""

    def __init__(
        self,
        crm: SugesterClient,
        store: StateStore,
        summary: RunSummary,
        *,
        owner: str,
        dry_run: bool,
        stale_claim_minutes: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.crm = crm
        self.store = store
        self.summary = summary
        self.owner = owner
        self.dry_run = dry_run
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self._lock = threading.Lock()
        self._deals_by_invoice: dict[int, int] | None = None
        # invoice id -> (invoice, deal, digest, whether the attempt may still land)
        self._unconfirmed: dict[int, tuple[Invoice, dict[str, Any], str, bool]] = {}
        # Invoices whose deal must show something new (a correction) once their pending create is confirmed.
        self.recheck: set[int] = set()
        self.rebuilt: set[int] = set()  # invoices whose link this run rebuilt from the CRM (`deal_upkeep` reads it)

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    def _stale_before(self) -> datetime:
        return self.clock() - timedelta(minutes=self.stale_claim_minutes)

    def write(
        self, invoice: Invoice, link: DealLink | None, deal: dict[str, Any], digest: str, shape: str | None = None
    ) -> bool:
        """Bring the invoice's deal to `deal`; True once done, False while a create awaits confirmation.

        `shape` (the deal-shaping config fingerprint) is recorded with the link once the deal shows it."""
        summary = self.summary
        if link is not None and link.deal_deleted_at is not None:
            raise _deleted(invoice.id, link.deal_id)
        if self.dry_run:
            if link is None or link.state != "linked":
                summary.add("deals_created")  # would be created
            else:
                summary.add("deals_unchanged" if link.payload_hash == digest else "deals_updated")
            return True
        if link is not None and link.state == "linked":
            if link.payload_hash == digest:
                summary.add("deals_unchanged")
                if shape is not None and link.shape_fingerprint != shape:
                    self.store.stamp_deal_shape([invoice.id], shape)
                return True
            self._update(invoice, link.deal_id, deal, digest, shape)
            return True
        if link is None:
            if self.store.claim_invoice(invoice.id, self.owner, digest):
                return self._create(invoice, deal, digest)
            link = self.store.deal_link(invoice.id)  # a concurrent run got there first
            if link is None or link.state == "linked":
                return self.write(invoice, link, deal, digest)
        # A pending create (ours, or a run's that died or is still at it): look it up before anything else.
        existing = self._deal_index().get(invoice.id)
        if existing is not None:
            self.store.confirm_deal(invoice.id, existing, link.payload_hash, invoice.updated_at)
            self.summary.add("deals_recovered")
            if link.payload_hash != digest:
                self._update(invoice, existing, deal, digest)
            return True
        if not self._may_resend(link):
            if link.claimed_by != self.owner:
                raise RecordDeferred(f"invoice {invoice.id}: run {link.claimed_by} is creating its deal right now")
            with self._lock:  # our own earlier attempt may still land: looked up again, not re-sent, this run
                self._unconfirmed.setdefault(invoice.id, (invoice, deal, digest, True))
            return False
        if not self.store.take_over_claim(invoice.id, self.owner, digest, stale_before=self._stale_before()):
            raise RecordDeferred(f"invoice {invoice.id}: run {link.claimed_by} is creating its deal right now")
        return self._create(invoice, deal, digest, shape)

    def _may_resend(self, link: DealLink) -> bool:
        """Whether the pending create of `link` can no longer land, so that sending it again is safe."""
        if link.claimed_at is not None and link.claimed_at < self._stale_before():
            return True
        known = self._unconfirmed.get(link.invoice_id)
        return known is not None and not known[3] and link.claimed_by == self.owner

    def _create(self, invoice: Invoice, deal: dict[str, Any], digest: str, shape: str | None = None) -> bool:
        try:
            created = self.crm.create_deal(deal)
        except AmbiguousWriteError as exc:
            log.warning("invoice %s: %s; will look the deal up before creating it again", invoice.id, exc)
            with self._lock:
                self._unconfirmed[invoice.id] = (invoice, deal, digest, exc.may_still_land)
            if not exc.may_still_land:
                self.store.end_attempt(invoice.id)  # the server is done with it: a later try may send it again
            return False
        except ApiRejected:
            self.store.release_claim(invoice.id)  # the CRM refused it: nothing was created
            raise
        deal_id = int(created["id"])
        self.store.confirm_deal(invoice.id, deal_id, digest, invoice.updated_at, shape)
        with self._lock:
            if self._deals_by_invoice is not None:
                self._deals_by_invoice[invoice.id] = deal_id
            self._unconfirmed.pop(invoice.id, None)
        self.summary.add("deals_created")
        return True

    def _update(
        self, invoice: Invoice, deal_id: int | None, deal: dict[str, Any], digest: str, shape: str | None = None
    ) -> None:
        try:
            self.crm.update_deal(int(deal_id), deal)
        except ApiNotFound:
            if self.store.mark_deal_deleted(invoice.id):
                self.summary.add("deals_deleted_in_crm")
            raise _deleted(invoice.id, deal_id) from None
        self.store.record_deal_payload(invoice.id, digest, invoice.updated_at, shape)
        self.summary.add("deals_updated")

    def _deal_index(self, *, reload: bool = False) -> dict[int, int]:
        """invoice id → deal id, from one scan of the CRM's deals; only needed to settle pending creates."""
        with self._lock:
            if self._deals_by_invoice is None or reload:
                index: dict[int, int] = {}
                for deal in self.crm.iter_deals():
                    invoice_id = as_id(external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY))
                    if invoice_id is not None:
                        index.setdefault(invoice_id, int(deal["id"]))
                self._deals_by_invoice = index
            return self._deals_by_invoice

    def rebuild_links(self) -> int:
        """With no deal link in the state DB, link every CRM deal that names its invoice; returns how many.

        One scan of the CRM's deals (the same scan that settles pending creates, kept for this run).
        """
        if self.dry_run or self.store.count_deal_links():
            return 0
        with self._lock:
            by_invoice: dict[int, dict[str, Any]] = {}
            for deal in self.crm.iter_deals():
                invoice_id = as_id(external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY))
                if invoice_id is not None and deal.get("id") is not None:
                    by_invoice.setdefault(invoice_id, deal)
            self._deals_by_invoice = {invoice_id: int(deal["id"]) for invoice_id, deal in by_invoice.items()}
        linked = 0
        for invoice_id, deal in by_invoice.items():
            digest = payload_hash(shown_deal(deal))
            if self.store.claim_invoice(invoice_id, self.owner, digest):
                self.store.confirm_deal(invoice_id, int(deal["id"]), digest, None)
                self.rebuilt.add(invoice_id)
                linked += 1
        if linked:
            log.info("rebuilt %s invoice→deal link(s) from the CRM's external ids", linked)
        return linked

    def settle_pending(
        self,
        seen: set[int],
        *,
        rehandle: Callable[[int], None],
    ) -> None:
        """Confirm or redo every create of ours (or a dead run's) whose outcome is not known yet.

        `rehandle(invoice_id)` reads the invoice again and handles it: for a dead run's claim this sweep did not
        meet, for a create that may be sent again (built afresh, so a correction recorded meanwhile is in it),
        and for a found deal that must show a correction recorded while its create was unconfirmed.
        """
        for _round in range(RECOVERY_ROUNDS):
            stale_before = self._stale_before()
            pending = [
                link
                for link in self.store.pending_deal_links()
                if link.claimed_by == self.owner or (link.claimed_at and link.claimed_at < stale_before)
            ]
            if not pending:
                break
            index = self._deal_index(reload=True)
            progress = False
            for link in pending:
                if link.invoice_id in index:
                    invoice = self._unconfirmed.pop(link.invoice_id, (None, None, None, None))[0]
                    updated_at = invoice.updated_at if invoice else None
                    self.store.confirm_deal(link.invoice_id, index[link.invoice_id], link.payload_hash, updated_at)
                    self.summary.add("deals_recovered")
                    progress = True
                    if link.invoice_id in self.recheck:  # a correction came while its create was unconfirmed
                        self.recheck.discard(link.invoice_id)
                        rehandle(link.invoice_id)
                elif not self._may_resend(link):
                    if link.invoice_id not in self._unconfirmed and link.invoice_id not in seen:
                        rehandle(link.invoice_id)  # counted as unconfirmed by `write`, or settled there
                        seen.add(link.invoice_id)
                elif link.invoice_id in self._unconfirmed:
                    # Sent again as the invoice reads now, not as the lost attempt was built: a correction
                    # recorded meanwhile must not be lost with it.
                    with self._lock:
                        self._unconfirmed.pop(link.invoice_id, None)
                    self.recheck.discard(link.invoice_id)
                    rehandle(link.invoice_id)
                    progress = True
                elif link.invoice_id not in seen:
                    rehandle(link.invoice_id)
                    seen.add(link.invoice_id)
                    progress = True
                else:
                    self.store.release_claim(link.invoice_id)  # met this run and not to be created after all
            if not progress:
                break  # what is left may still land: a later run looks it up again
        self.summary.deals_unconfirmed = len(self._unconfirmed)


def _deleted(invoice_id: int, deal_id: int | None) -> RecordError:
    return RecordError(
        "deal_deleted_in_crm",
        f"deal {deal_id} of invoice {invoice_id} no longer exists in the CRM; it is not recreated",
    )


def shown_deal(deal: dict[str, Any]) -> dict[str, Any]:
    """The part of a CRM deal that `deal_mapping.build_deal` writes, in the shape it writes it.

    Its hash equals the hash of the payload a run would send when the deal already shows the invoice as it
    is, so a link rebuilt from the CRM costs no update for an unchanged invoice.
    """
    shown: dict[str, Any] = {
        "name": deal.get("name"),
        "price": None if deal.get("price") is None else str(deal.get("price")),
        "currency": deal.get("currency"),
        "client_id": _int_or_none(deal.get("client_id")),
        "url": deal.get("url"),
        "description": deal.get("description"),
        "external_ids": {FAKTUROWNIA_INVOICE_KEY: external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)},
    }
    department_id = _int_or_none(deal.get("department_id"))
    if department_id is not None:
        shown["department_id"] = department_id
    return shown


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
