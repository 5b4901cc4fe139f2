"""An invoice made from a CRM deal is that deal's invoice: no loop, no echo.

`crm_deals_to_invoices` creates an invoice with `oid` = the deal id under a claim keyed `deal:<id>`. When
`fakturownia_invoices_to_deals` later meets that invoice, it must update that deal, never create a second one;
even when the process that created the invoice died before recording the link, the `oid` under our own claim
proves which deal it belongs to.

With the state DB lost or replaced, that claim is gone too. Then, and only while deal invoicing is on (so an
account whose invoices carry a shop's order numbers in `oid` is never asked), the CRM is asked: the deal the
`oid` names must exist, carry no other invoice, and have the invoice's amount (gross or net, as the invoice was
made from its price). Only then is the invoice linked to it instead of getting a deal of its own.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from fakturownia_sync.claims import FAKTUROWNIA_INVOICE, deal_key
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY
from fakturownia_sync.errors import ApiNotFound
from fakturownia_sync.ids import as_id
from fakturownia_sync.invoice_from_deal import deal_id_of_oid
from fakturownia_sync.records import Invoice
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of


def link_invoice_made_from_deal(store: StateStore, invoice: Invoice, crm: SugesterClient | None = None) -> bool:
    """For `fakturownia_invoices_to_deals`: link an invoice made from a CRM deal to that deal before it would
    make a second one. True when the invoice is (now) linked to its deal; False when it was not made from a
    deal by this product (no `oid`, or an `oid` under none of our claims, e.g. a shop's order number).

    `crm` (given while deal invoicing is on) lets an invoice whose claim was lost with the state DB be
    recognised from the CRM's side."""
    deal_id = deal_id_of_oid(invoice.raw.get("oid"))
    if deal_id is None:
        return False
    claim = store.create_claim(FAKTUROWNIA_INVOICE, deal_key(deal_id))
    if claim is None:
        if crm is None or not _made_from(crm, deal_id, invoice):
            return False
    elif claim.created_id is not None and claim.created_id != invoice.id:
        return False
    # Ours, confirmed or not: an unconfirmed claim means the create landed and we died (or lost the answer)
    # before recording it. Its oid proves which deal it is for.
    return store.link_deal(invoice.id, deal_id, None, invoice.updated_at)


def _made_from(crm: SugesterClient, deal_id: int, invoice: Invoice) -> bool:
    """Whether CRM deal `deal_id` is the one `invoice` was made from: it exists, names no other invoice, and
    its price is the invoice's gross or net amount."""
    try:
        deal = crm.get_deal(deal_id)
    except ApiNotFound:
        return False
    named = as_id(external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY))
    if named is not None and named != invoice.id:
        return False
    try:
        price = Decimal(str(deal.get("price")).strip())
    except (InvalidOperation, ValueError):
        return False
    return price.is_finite() and price in (invoice.price_gross, invoice.price_net)
