"""Keeping existing deals right when something other than the invoice itself changes what they should show.

The sweep brings only invoices that were edited, so three kinds of change would otherwise leave deals wrong
without a word:

A config change that alters how deals look
    Each deal link records the fingerprint of the deal-shaping config it was written under
    (`deal_mapping.deal_shape_fingerprint`: `deal_amount`, `department_map`, `no_department`, the users
    pairing, and the version of `build_deal`). After the sweep, each incremental run re-reads (by id) at most
    `REAPPLY_LIMIT` deals written under another fingerprint and brings them up to date through the same
    per-invoice code as the sweep (an unchanged deal costs the read, no write); the summary says how many were
    re-applied and how many remain, and the next runs continue until none remain. A deal that cannot be
    brought up to date (the invoice was deleted, a department is unmapped, the deal is gone) is recorded as
    visited: the quarantine speaks for it, and it is not read again on every run.

A correction invoice
    A correction holds the difference to the invoice it corrects. It is recorded in the state DB
    (`invoice_corrections`) and the corrected invoice's deal is rewritten with the amount after all its
    corrections; whichever of the two documents a run meets first, the deal ends the same. The correction
    gets no deal of its own. A cancelled correction is forgotten again.

A link just rebuilt from the CRM
    With a new or lost state DB the corrections recorded so far are lost too, and the sweep may meet an
    invoice before its correction: a rebuilt link whose deal differs from what the run would write is
    therefore written after the sweep (`defer_rebuilt`), once every correction the sweep met is recorded,
    so a deal that already shows its corrections is not written twice (or at all).

A deal deleted in the CRM
    About once a day (`DELETED_CHECK_EVERY`) one scan of the CRM's deals is compared with the deal links;
    a linked deal missing from it is confirmed by its id (a list that moved while it was read is no proof),
    then recorded on the link, reported (summary `deals_deleted_in_crm`, a quarantine entry
    `deal_deleted_in_crm` per invoice) and never written or recreated. The first check happens a day after
    the first run; a run that has just rebuilt its links from that same scan skips it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fakturownia_sync.deal_mapping import deal_shape_fingerprint
from fakturownia_sync.errors import ApiNotFound
from fakturownia_sync.records import Invoice
from fakturownia_sync.state import DealLink

if TYPE_CHECKING:
    from fakturownia_sync.invoices_to_deals import InvoicesToDeals

log = logging.getLogger(__name__)

REAPPLY_LIMIT = 500  # stale deals re-read and rewritten per run, so one config change never makes a run huge
DELETED_CHECK_EVERY = timedelta(days=1)
DELETED_CONFIRM_LIMIT = 500  # missing deals confirmed by id per run; the check resumes on the next run
DELETED_DEALS_REASON = "deal_deleted_in_crm"


def _check_stream(engine: InvoicesToDeals) -> str:
    """The cursor row that remembers when the deleted-deal check of this stream last finished."""
    return f"{engine.summary.stream}.deleted_deals_check"


@contextmanager
def invoice_lock(engine: InvoicesToDeals, invoice_id: int) -> Iterator[None]:
    """Serialise work on one invoice's deal between writer threads (the invoice and its corrections)."""
    with engine.deal_locks.hold(f"invoice:{invoice_id}"):
        yield


class AfterSweep:
    """Invoices whose rebuilt deal is written after the sweep, by id, with the version the sweep read."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closed = False
        self.raws: dict[int, dict[str, Any]] = {}


def defer_rebuilt(engine: InvoicesToDeals, invoice: Invoice, link: DealLink | None, digest: str) -> bool:
    """True when this invoice's deal is to be written after the sweep instead of now (see the module doc)."""
    if link is None or link.payload_hash == digest or invoice.id not in engine.deals.rebuilt:
        return False
    after = engine.after_sweep
    with after.lock:
        if after.closed:
            return False
        after.raws[invoice.id] = invoice.raw
    return True


# Corrections -------------------------------------------------------------------------------------------------


def record_correction(engine: InvoicesToDeals, correction: Invoice, corrected_id: int) -> dict[str, Any] | None:
    """Record a correction; returns the corrected invoice (read now) when its deal must be rewritten.

    Recorded under the corrected invoice's lock, and its link marked stale in the same step: if the rewrite
    that follows does not happen (the run fails first), the re-apply pass of a later run does it.
    """
    store, summary = engine.store, engine.summary
    with invoice_lock(engine, corrected_id):
        link = store.deal_link(corrected_id)
        has_deal = link is not None and link.deal_deleted_at is None
        if engine.dry_run:
            summary.add("corrections_applied" if has_deal else "corrections_without_deal")
            return None
        if correction.cancelled:
            changed = store.forget_correction(correction.id) is not None
        else:
            changed = store.record_correction(
                correction.id, corrected_id, correction.number, correction.price_net, correction.price_gross
            )
        if not changed:
            return None  # met again unchanged: the corrected deal already shows it (or gets it when written)
        if link is None and engine.deals.create_in_flight(corrected_id):
            engine.deals.recheck.add(corrected_id)  # its create awaits confirmation: rewritten once it is found
        if not has_deal:
            summary.add("corrections_without_deal")  # the corrected invoice's deal includes it once written
            return None
        store.stamp_deal_shape([corrected_id], None)
    try:
        raw = engine.fakturownia.get_invoice(corrected_id)
    except ApiNotFound:
        log.info("correction %s: corrected invoice %s is deleted; its deal is left alone", correction.id, corrected_id)
        return None
    summary.add("corrections_applied")
    return raw


# The pass after the sweep --------------------------------------------------------------------------------------


def keep_deals_up(engine: InvoicesToDeals, handled: set[int], *, incremental: bool) -> None:
    """After the sweep: the deferred rebuilt deals; after an incremental one also the re-apply of a changed
    config (a bounded batch) and the deleted-deal check."""
    after = engine.after_sweep
    with after.lock:
        after.closed = True
        deferred, after.raws = after.raws, {}
    for invoice_id in sorted(deferred):
        engine.handle(deferred[invoice_id], retry=True)
    if engine.dry_run or not incremental:
        return
    reapply_stale_deals(engine, handled, REAPPLY_LIMIT)
    check_deleted_deals(engine)


def reapply_stale_deals(engine: InvoicesToDeals, handled: set[int], limit: int) -> int:
    """Bring up to `limit` deals written under another deal-shaping config up to date; returns how many."""
    store, summary = engine.store, engine.summary
    shape = deal_shape_fingerprint(engine.config)
    reapplied = 0
    for link in store.stale_deal_links(shape, limit):
        if link.invoice_id not in handled:  # met by this run's sweep already: that attempt stands
            try:
                raw = engine.fakturownia.get_invoice(link.invoice_id)
            except ApiNotFound:
                raw = None  # a deleted invoice leaves its deal alone
            if raw is not None:
                engine.handle(raw, retry=True)
                handled.add(link.invoice_id)
                reapplied += 1
        store.stamp_deal_shape([link.invoice_id], shape)
    summary.add("deals_reapplied", reapplied)
    summary.deals_reapply_remaining = store.count_stale_deal_links(shape)
    if reapplied or summary.deals_reapply_remaining:
        log.info("re-applied the deal config to %s deal(s); %s remain", reapplied, summary.deals_reapply_remaining)
    return reapplied


def check_deleted_deals(engine: InvoicesToDeals) -> int:
    """About once a day, find linked deals deleted in the CRM and report them; returns how many were found."""
    store, summary, now = engine.store, engine.summary, engine.clock()
    stream = _check_stream(engine)
    last = store.get_cursor(stream)
    if last is None or summary.deal_links_rebuilt:  # first run, or the links just came from that very scan
        store.set_cursor(stream, now)
        return 0
    if now - last < DELETED_CHECK_EVERY:
        return 0
    live = store.live_deal_ids()
    present: set[int] = set()
    if live:
        for deal in engine.crm.iter_deals():
            try:
                present.add(int(deal["id"]))
            except (KeyError, TypeError, ValueError):
                continue
    summary.deals_checked_in_crm = len(live)
    missing = sorted(set(live) - present)
    found = 0
    for deal_id in missing[:DELETED_CONFIRM_LIMIT]:
        try:
            engine.crm.get_deal(deal_id)
            continue  # pushed off a page while the list was read: it exists
        except ApiNotFound:
            pass
        invoice_id = live[deal_id]
        if not store.mark_deal_deleted(invoice_id):
            continue
        found += 1
        message = f"deal {deal_id} of invoice {invoice_id} was deleted in the CRM; it is not recreated"
        log.warning("invoice %s: %s", invoice_id, message)
        summary.add("deals_deleted_in_crm")
        summary.add_to("quarantined_by_reason", DELETED_DEALS_REASON)
        payload = {"id": invoice_id, "deal_id": deal_id}
        fingerprint = engine.config.fingerprint()
        store.quarantine(summary.stream, invoice_id, DELETED_DEALS_REASON, message, payload, fingerprint)
    if len(missing) <= DELETED_CONFIRM_LIMIT:  # else the next run confirms the rest before the clock restarts
        store.set_cursor(stream, now)
    return found
