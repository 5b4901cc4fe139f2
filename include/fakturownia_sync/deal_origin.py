"""An invoice made from a CRM deal is that deal's invoice: no loop, no echo.

`crm_deals_to_invoices` creates an invoice with `oid` = the deal id under a claim keyed `deal:<id>`. When
`fakturownia_invoices_to_deals` later meets that invoice, it must update that deal, never create a second one;
even when the process that created the invoice died before recording the link, the `oid` under our own claim
proves which deal it belongs to.
"""

from __future__ import annotations

from fakturownia_sync.claims import FAKTUROWNIA_INVOICE
from fakturownia_sync.invoice_from_deal import deal_id_of_oid
from fakturownia_sync.records import Invoice
from fakturownia_sync.state import StateStore


def link_invoice_made_from_deal(store: StateStore, invoice: Invoice) -> bool:
    """For `fakturownia_invoices_to_deals`: link an invoice made from a CRM deal to that deal before it would
    make a second one. True when the invoice is (now) linked to its deal; False when it was not made from a
    deal by this product (no `oid`, or an `oid` under none of our claims, e.g. a shop's order number)."""
    deal_id = deal_id_of_oid(invoice.raw.get("oid"))
    if deal_id is None:
        return False
    claim = store.create_claim(FAKTUROWNIA_INVOICE, f"deal:{deal_id}")
    if claim is None or (claim.created_id is not None and claim.created_id != invoice.id):
        return False
    # Ours, confirmed or not: an unconfirmed claim means the create landed and we died (or lost the answer)
    # before recording it. Its oid proves which deal it is for.
    return store.link_invoice_made_from_deal(invoice.id, deal_id, invoice.updated_at)
