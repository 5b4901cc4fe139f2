"""One invoice's deal: what an invoice read from Fakturownia becomes, or why it becomes nothing.

Every invoice that a run meets (in its sweep, a quarantine retry, the deal upkeep, or while settling a create
whose outcome is unknown) is handled here, one at a time, by one of the run's writer threads:

- a cost invoice gets no deal; a correction gets none either, but is recorded and rewrites the deal of the
  invoice it corrects (`deal_upkeep`);
- an invoice made from a CRM deal by `crm_deals_to_invoices` is that deal's invoice (`deal_origin`);
- an invoice not of a chosen kind, or cancelled, gets no deal, but one that has a deal keeps it, marked
  (`deal_mapping`);
- otherwise its buyer's CRM client is found or created (`invoice_clients`), its deal is built
  (`deal_mapping.build_deal`) and written exactly once (`deal_writer`).

A record that cannot be processed is quarantined with its reason and the run carries on, a create in flight
in another run defers the invoice to a later run, and only an API that cannot be reached or refuses our token
fails the run: the rule both record streams share (`record_outcome`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fakturownia_sync.deal_mapping import build_deal, corrected_invoice_id, deal_shape_fingerprint, payload_hash
from fakturownia_sync.deal_origin import link_invoice_made_from_deal
from fakturownia_sync.deal_upkeep import defer_rebuilt, invoice_lock, record_correction
from fakturownia_sync.errors import ApiNotFound, RecordError
from fakturownia_sync.record_outcome import RecordStream, handle_record
from fakturownia_sync.records import parse_invoice

if TYPE_CHECKING:
    from fakturownia_sync.invoices_to_deals import InvoicesToDeals

log = logging.getLogger(__name__)


def handle_invoice(engine: InvoicesToDeals, raw: dict[str, Any], *, retry: bool = False) -> None:
    """Bring one invoice's deal up to date, or quarantine the invoice with a reason (`record_outcome`)."""
    summary = engine.summary
    if not retry:
        summary.add("invoices_seen")
    stream = RecordStream(
        kind="invoice",
        stream=summary.stream,
        store=engine.store,
        count=summary.add,
        count_reason=lambda reason: summary.add_to("quarantined_by_reason", reason),
        secrets=engine.secrets,
        fingerprint=engine.config.fingerprint,
        dry_run=engine.dry_run,
    )
    handle_record(stream, raw, lambda: _deal_for(engine, raw))


def _deal_for(engine: InvoicesToDeals, raw: dict[str, Any]) -> bool:
    """Returns True once the invoice is fully handled (written, unchanged, marked or deliberately skipped).

    A correction gets no deal: it rewrites the deal of the invoice it corrects (`deal_upkeep`). An invoice
    with a deal that is cancelled or no longer of a chosen kind keeps it, marked (`deal_mapping`)."""
    invoice = parse_invoice(raw)
    summary = engine.summary
    if not invoice.income:
        summary.add("skipped_cost")
        return True
    corrected_id = corrected_invoice_id(invoice)
    if corrected_id is not None and corrected_id != invoice.id:
        corrected = record_correction(engine, invoice, corrected_id)
        if corrected is None or corrected_invoice_id(parse_invoice(corrected)) is not None:
            return True
        return _deal_for(engine, corrected)
    if invoice.kind == "correction" and invoice.kind in engine.invoice_kinds:
        raise RecordError("correction_without_invoice", f"correction {invoice.id} names no invoice it corrects")
    out_of_kinds = invoice.kind not in engine.invoice_kinds
    with invoice_lock(engine, invoice.id):  # its corrections may rewrite this deal from another thread
        link = engine.store.deal_link(invoice.id)
        made_from_deals = engine.crm if engine.config.deal_invoicing.enabled else None
        if link is None and not out_of_kinds and link_invoice_made_from_deal(engine.store, invoice, made_from_deals):
            link = engine.store.deal_link(invoice.id)  # made from a CRM deal: that deal is its deal
        if out_of_kinds and link is None:
            summary.add_to("skipped_by_kind", invoice.kind)
            return True
        if invoice.cancelled and link is None:
            summary.add("skipped_cancelled")
            return True
        crm_department_id = engine.departments.to_crm(invoice.department_id, f"invoice {invoice.id}")
        responsible_id = engine.responsible.crm_user_for(invoice.raw.get("user_id"))
        deal = build_deal(
            invoice,
            crm_client_id=engine.clients.crm_client_for(invoice),
            crm_department_id=crm_department_id,
            amount=engine.config.deal_amount,
            invoice_url=engine.fakturownia.invoice_url(invoice.id),
            responsible_id=responsible_id,
            corrections=engine.store.corrections_of(invoice.id),
            out_of_kinds=out_of_kinds,
        )
        digest = payload_hash(deal)
        if defer_rebuilt(engine, invoice, link, digest):
            return True  # written after the sweep, once its corrections are known
        if link is None:  # a new deal: counted with or without its responsible person
            summary.add("deals_with_responsible" if responsible_id is not None else "deals_without_responsible")
        elif link.payload_hash != digest:  # written now with its marker
            if out_of_kinds:
                summary.add("deals_marked_out_of_kinds")
            if invoice.cancelled:
                summary.add("deals_marked_cancelled")
        return engine.deals.write(invoice, link, deal, digest, deal_shape_fingerprint(engine.config))


def handle_again(engine: InvoicesToDeals, invoice_id: int) -> None:
    """An unconfirmed deal create (a dead run's, or one to send again or to check): fetch the invoice and finish."""
    try:
        raw = engine.fakturownia.get_invoice(invoice_id)
    except ApiNotFound:
        engine.deals.forget_create(invoice_id)  # the invoice is gone and no deal was created for it
        return
    handle_invoice(engine, raw, retry=True)
