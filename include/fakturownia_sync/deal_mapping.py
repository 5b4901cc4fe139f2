"""What a deal looks like for an invoice: name, amount, currency, client, department, link, external id.

The payload is a pure function of the invoice and config, and its hash is stored with the link, so a run
sends an update only when something the deal shows has changed (and never echoes its own writes).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any, Literal

from fakturownia_sync.records import Invoice

FAKTUROWNIA_INVOICE_KEY = "fakturownia_invoice_id"

KIND_LABELS = {
    "vat": "Faktura",
    "vat_margin": "Faktura VAT marża",
    "advance": "Faktura zaliczkowa",
    "final": "Faktura końcowa",
    "receipt": "Paragon",
    "proforma": "Faktura proforma",
    "correction": "Faktura korygująca",
    "bill": "Rachunek",
    "vat_mp": "Faktura MP",
    "vat_rr": "Faktura RR",
    "estimate": "Zamówienie",
}


def deal_name(invoice: Invoice) -> str:
    name = f"{KIND_LABELS.get(invoice.kind, 'Dokument')} {invoice.number}"
    return f"{name} (anulowana)" if invoice.cancelled else name


def _amount(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


def build_deal(
    invoice: Invoice,
    *,
    crm_client_id: int,
    crm_department_id: int | None,
    amount: Literal["gross", "net"],
    invoice_url: str,
    responsible_id: int | None = None,
) -> dict[str, Any]:
    price = invoice.price_gross if amount == "gross" else invoice.price_net
    description = (
        f"{deal_name(invoice)} z {invoice.issue_date.isoformat()}: netto {_amount(invoice.price_net)}, "
        f"brutto {_amount(invoice.price_gross)} {invoice.currency}. Fakturownia: {invoice_url}"
    )
    deal: dict[str, Any] = {
        "name": deal_name(invoice),
        "price": _amount(price),
        "currency": invoice.currency,
        "client_id": crm_client_id,
        "url": invoice_url,
        "description": description,
        "external_ids": {FAKTUROWNIA_INVOICE_KEY: str(invoice.id)},
    }
    if crm_department_id is not None:
        deal["department_id"] = crm_department_id
    if responsible_id is not None:  # the CRM user paired with the invoice's issuer (users.py); else none
        deal["responsible_id"] = responsible_id
    return deal


def payload_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
