"""Writing one invoice's deal to the CRM exactly once: create under claim, link, update, settle what is unknown.

How "exactly one deal" survives retries, crashes and overlapping runs
    A deal is created through `claims.create_under_claim` (target `CRM_DEAL`, key `invoice:<id>`), the one
    create-under-claim routine of every create the sync makes, and sent with
    `external_ids.fakturownia_invoice_id`. The claim in the state DB lets one run at a time create the deal;
    the link (`invoice_deals`: invoice → deal, with the hash of what the deal shows) is written the moment the
    CRM answers, before the claim is confirmed, so a confirmed claim always has its link. If the process dies
    between the CRM's answer and our commit, or the create's answer is lost, the claim stays unconfirmed.
    Whoever next meets it looks the deal up in one scan of the CRM's deals by that external id and links what
    it finds; only when the CRM has no such deal, and the earlier attempt can no longer land, is it sent again.

When a create may be sent again
    As for every claimed create (`claims`): a create in flight in another run defers the invoice; our own
    unconfirmed create is looked up at once, but sent again before the take-over window only when the server
    answered that try (`AmbiguousWriteError.may_still_land` is False: a 5xx or a garbled body means the server
    is done with the request, so a look-up that finds nothing is final); anyone's is sent again once its claim
    is older than `stale_claim_minutes`, the window that every request's hard deadline (`timing`) keeps well
    clear of. A create held open by a slow server, cut by our deadline, or left by a killed worker is
    therefore never repeated a moment later, not even by the same run: the run ends unconfirmed (the cursor
    stays), and a run after the window looks it up again and creates it only if it is still missing. A
    look-up that may lead to a create reads the CRM after the attempt it replaces could last land: the scan
    is repeated when it is older than that (a long run, or this run's own attempt).

Links rebuilt from the CRM
    The CRM is the source of truth for which deals exist. When the state DB holds no deal link at all (a
    new, replaced or lost state DB; a fresh install with an empty CRM costs one empty scan per run until
    its first deal), `rebuild_links` scans the CRM's deals once, before anything is written, and links
    every deal carrying `external_ids.fakturownia_invoice_id`, with the hash of what the deal shows now,
    so an unchanged invoice then costs no write. A state DB that lost only some links is not detected
    this way; a lost link's unconfirmed claim is settled by the same scan, and a missing one would repeat a
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

from fakturownia_sync.claims import CRM_DEAL, create_under_claim, invoice_key, invoice_of_key, stale_cutoff
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY, payload_hash
from fakturownia_sync.errors import ApiNotFound, RecordDeferred, RecordError
from fakturownia_sync.ids import as_id
from fakturownia_sync.records import Invoice
from fakturownia_sync.run_summary import RunSummary
from fakturownia_sync.state import CreateClaim, DealLink, StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of
from fakturownia_sync.timing import REQUEST_DEADLINE_SECONDS

log = logging.getLogger(__name__)

RECOVERY_ROUNDS = 5
LAST_LANDING = timedelta(seconds=REQUEST_DEADLINE_SECONDS)  # an attempt lands within this of its claim, or never


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
        # invoice id → (deal id, hash of what the deal shows), from one scan of the CRM's deals, and when it was read
        self._index: dict[int, tuple[int, str]] | None = None
        self._index_read_at: datetime | None = None
        # invoice id → (the hash its deal should show, when its create was last left unconfirmed)
        self._unconfirmed: dict[int, tuple[str, datetime]] = {}
        # Invoices whose deal must show something new (a correction) once their unconfirmed create is found.
        self.recheck: set[int] = set()
        self.rebuilt: set[int] = set()  # invoices whose link this run rebuilt from the CRM (`deal_upkeep` reads it)

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    def create_in_flight(self, invoice_id: int) -> bool:
        """Whether the invoice's deal create is claimed and not confirmed (in flight, or its answer was lost)."""
        claim = self.store.create_claim(CRM_DEAL, invoice_key(invoice_id))
        return claim is not None and not claim.confirmed

    def forget_create(self, invoice_id: int) -> None:
        """Release the unconfirmed claim of a deal that is not to be created after all (the invoice is gone)."""
        claim = self.store.create_claim(CRM_DEAL, invoice_key(invoice_id))
        if claim is not None and not claim.confirmed:
            self.store.release_create(claim.id)

    def write(
        self, invoice: Invoice, link: DealLink | None, deal: dict[str, Any], digest: str, shape: str | None = None
    ) -> bool:
        """Bring the invoice's deal to `deal`; True once done, False while a create awaits confirmation.

        `shape` (the deal-shaping config fingerprint) is recorded with the link once the deal shows it."""
        summary = self.summary
        if link is not None and link.deal_deleted_at is not None:
            raise _deleted(invoice.id, link.deal_id)
        if self.dry_run:
            if link is None:
                summary.add("deals_created")  # would be created
            else:
                summary.add("deals_unchanged" if link.payload_hash == digest else "deals_updated")
            return True
        if link is None:
            return self._create(invoice, deal, digest, shape)
        if link.payload_hash == digest:
            summary.add("deals_unchanged")
            if shape is not None and link.shape_fingerprint != shape:
                self.store.stamp_deal_shape([invoice.id], shape)
            return True
        self._update(invoice, link.deal_id, deal, digest, shape)
        return True

    def _create(self, invoice: Invoice, deal: dict[str, Any], digest: str, shape: str | None) -> bool:
        stale_before = stale_cutoff(self.clock(), self.stale_claim_minutes)
        outcome = create_under_claim(
            self.store, CRM_DEAL, [invoice_key(invoice.id)], self.owner, stale_before=stale_before,
            find_existing=lambda: self._find(invoice, stale_before),
            create=lambda: self._send(invoice, deal, digest, shape),
        )  # fmt: skip
        if outcome.status == "held_by_other":
            raise RecordDeferred(f"invoice {invoice.id}: run {outcome.holder} is creating its deal right now")
        with self._lock:
            if outcome.record_id is None:  # it may still land: looked up again, not re-sent, before the window
                self._unconfirmed[invoice.id] = (digest, self.clock())
                return False
            self._unconfirmed.pop(invoice.id, None)
        if outcome.status == "created":
            return True
        # Found: linked by the look-up, or by the run that confirmed the claim (before it confirmed it).
        link = self.store.deal_link(invoice.id)
        if link is None:  # a confirmed claim whose link was lost: the deal shows something unknown
            self._link(invoice.id, outcome.record_id, None, invoice.updated_at)
            link = self.store.deal_link(invoice.id)
        return self.write(invoice, link, deal, digest, shape)

    def _send(self, invoice: Invoice, deal: dict[str, Any], digest: str, shape: str | None) -> int:
        """Create the deal and link it at once, before its claim is confirmed (`create_under_claim` does that)."""
        deal_id = int(self.crm.create_deal(deal)["id"])
        self._link(invoice.id, deal_id, digest, invoice.updated_at, shape)
        with self._lock:
            if self._index is not None:
                self._index[invoice.id] = (deal_id, digest)
        self.summary.add("deals_created")
        return deal_id

    def _find(self, invoice: Invoice, stale_before: datetime) -> int | None:
        """The look-up before a create is sent again: the deal naming the invoice, linked at once when found.

        Read after the attempt it replaces could last land: a stale claim's attempt within `LAST_LANDING` of
        its claim, one of this run by the time its answer (or its deadline) came."""
        read_after = stale_before + LAST_LANDING
        with self._lock:
            ours = self._unconfirmed.get(invoice.id)
        if ours is not None:
            read_after = max(read_after, ours[1])
        found = self._deal_index(read_after=read_after).get(invoice.id)
        if found is None:
            return None
        deal_id, shown = found
        self._link(invoice.id, deal_id, shown, invoice.updated_at)
        self.summary.add("deals_recovered")
        return deal_id

    def _link(
        self, invoice_id: int, deal_id: int, digest: str | None, updated_at: datetime | None, shape: str | None = None
    ) -> None:
        if not self.store.link_deal(invoice_id, deal_id, digest, updated_at, shape):
            raise RecordError(
                "deal_linked_elsewhere",
                f"invoice {invoice_id}: its deal {deal_id} cannot be linked, one of them is linked to another record",
            )

    def _update(self, invoice: Invoice, deal_id: int, deal: dict[str, Any], digest: str, shape: str | None) -> None:
        try:
            self.crm.update_deal(int(deal_id), deal)
        except ApiNotFound:
            if self.store.mark_deal_deleted(invoice.id):
                self.summary.add("deals_deleted_in_crm")
            raise _deleted(invoice.id, deal_id) from None
        self.store.record_deal_payload(invoice.id, digest, invoice.updated_at, shape)
        self.summary.add("deals_updated")

    def _deal_index(self, *, reload: bool = False, read_after: datetime | None = None) -> dict[int, tuple[int, str]]:
        """invoice id → (deal id, hash of what it shows), from one scan of the CRM's deals, read again when
        `reload` or when it was read before `read_after`; only needed to settle creates and to rebuild links."""
        with self._lock:
            outdated = read_after is not None and self._index_read_at is not None and self._index_read_at < read_after
            if self._index is None or reload or outdated:
                read_at = self.clock()
                index: dict[int, tuple[int, str]] = {}
                for deal in self.crm.iter_deals():
                    invoice_id = as_id(external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY))
                    if invoice_id is not None and deal.get("id") is not None:
                        index.setdefault(invoice_id, (int(deal["id"]), payload_hash(shown_deal(deal))))
                self._index, self._index_read_at = index, read_at
            return self._index

    def rebuild_links(self) -> int:
        """With no deal link in the state DB, link every CRM deal that names its invoice; returns how many.

        One scan of the CRM's deals (the same scan that settles unconfirmed creates, kept for this run).
        """
        if self.dry_run or self.store.count_deal_links():
            return 0
        linked = 0
        for invoice_id, (deal_id, shown) in self._deal_index(reload=True).items():
            if self.store.link_deal(invoice_id, deal_id, shown, None):
                self.rebuilt.add(invoice_id)
                linked += 1
        if linked:
            log.info("rebuilt %s invoice→deal link(s) from the CRM's external ids", linked)
        return linked

    def settle_pending(self, seen: set[int], *, rehandle: Callable[[int], None]) -> None:
        """Confirm or redo every deal create of ours (or a dead run's) whose outcome is not known yet.

        `rehandle(invoice_id)` reads the invoice again and handles it: for a dead run's claim this sweep did not
        meet, for a create that may be sent again (built afresh, so a correction recorded meanwhile is in it),
        and for a found deal that must show more than it does (a correction recorded while its create was
        unconfirmed, or an edit read since that create was built).
        """
        for _round in range(RECOVERY_ROUNDS):
            stale_before = stale_cutoff(self.clock(), self.stale_claim_minutes)
            pending = [
                (invoice_id, claim)
                for claim in self.store.unconfirmed_creates(CRM_DEAL)
                if (claim.owner == self.owner or claim.claimed_at < stale_before)
                and (invoice_id := _invoice_of(claim)) is not None
            ]
            if not pending:
                break
            index = self._deal_index(reload=True)
            progress = False
            for invoice_id, claim in pending:
                progress |= self._settle(invoice_id, claim, index, stale_before, seen, rehandle)
            if not progress:
                break  # what is left may still land: a later run looks it up again
        self.summary.deals_unconfirmed = len(self._unconfirmed)

    def _settle(
        self,
        invoice_id: int,
        claim: CreateClaim,
        index: dict[int, tuple[int, str]],
        stale_before: datetime,
        seen: set[int],
        rehandle: Callable[[int], None],
    ) -> bool:
        """Settle one unconfirmed create (ours, or stale); True when that made progress."""
        link = self.store.deal_link(invoice_id)  # linked, but the claim not yet confirmed: a crash, or a rebuild
        found = (link.deal_id, link.payload_hash) if link is not None else index.get(invoice_id)
        if found is not None:
            deal_id, shown = found
            if link is None:
                self._link(invoice_id, deal_id, shown, None)
                self.summary.add("deals_recovered")
            self.store.confirm_create(claim.id, deal_id)
            with self._lock:
                wanted = self._unconfirmed.pop(invoice_id, None)
            if invoice_id in self.recheck or (wanted is not None and wanted[0] != shown):
                self.recheck.discard(invoice_id)
                rehandle(invoice_id)
            return True
        if claim.claimed_at >= stale_before:  # ours, and it may still land: looked up, never re-sent, this run
            if invoice_id not in self._unconfirmed and invoice_id not in seen:
                rehandle(invoice_id)  # counted as unconfirmed by `write`, or settled there
                seen.add(invoice_id)
            return False
        if invoice_id in self._unconfirmed:
            # Sent again as the invoice reads now, not as the lost attempt was built: a correction recorded
            # meanwhile must not be lost with it.
            with self._lock:
                self._unconfirmed.pop(invoice_id, None)
            self.recheck.discard(invoice_id)
            rehandle(invoice_id)
            return True
        if invoice_id not in seen:
            rehandle(invoice_id)
            seen.add(invoice_id)
            return True
        self.store.release_create(claim.id)  # met this run and not to be created after all
        return False


def _invoice_of(claim: CreateClaim) -> int | None:
    return next((invoice_id for key in claim.keys if (invoice_id := invoice_of_key(key)) is not None), None)


def _deleted(invoice_id: int, deal_id: int | None) -> RecordError:
    return RecordError(
        "deal_deleted_in_crm",
        f"deal {deal_id} of invoice {invoice_id} no longer exists in the CRM; it is not recreated",
    )


def shown_deal(deal: dict[str, Any]) -> dict[str, Any]:
    """The part of a CRM deal that `deal_mapping.build_deal` writes, in the shape it writes it.

    Its hash equals the hash of the payload a run would send when the deal already shows the invoice as it
    is, so a link rebuilt from the CRM (or a deal found after a lost answer) costs no update for an unchanged
    invoice.
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
