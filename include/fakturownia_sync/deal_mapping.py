"""What a deal looks like for an invoice: name, amount, currency, client, department, link, external id.

The payload is a pure function of the invoice, its corrections and the config, and its hash is stored with
the link, so a run sends an update only when something the deal shows has changed (and never echoes its own
writes). `deal_shape_fingerprint` names the config keys that change how deals look: a deal written under
another fingerprint is re-applied by `deal_upkeep`.

Changes that keep a deal but change what it means are shown on it, never by deleting it:
    - a cancelled invoice: the name ends with "(anulowana)";
    - an invoice no longer of a chosen kind (its kind was changed): "(poza wybranymi rodzajami)";
    - a correction invoice: the corrected invoice's deal shows the amount after the correction and names the
      correction in its description (the correction itself never gets a deal).
Each marker goes away again if the invoice comes back (un-cancelled, kind changed back).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from fakturownia_sync.ids import as_id
from fakturownia_sync.records import Invoice

if TYPE_CHECKING:
    from fakturownia_sync.config import SyncConfig
    from fakturownia_sync.state.deal_links import CorrectionRow

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


# The config keys that change how an existing deal looks (amount, department, responsible person), and a
# version of `build_deal` itself: a change of either makes every deal stale, to be re-applied by `deal_upkeep`.
DEAL_SHAPE_KEYS = frozenset({"deal_amount", "department_map", "no_department", "fakturownia_users"})
DEAL_SHAPE_VERSION = 2
CANCELLED_MARK = "(anulowana)"
OUT_OF_KINDS_MARK = "(poza wybranymi rodzajami)"


def deal_shape_fingerprint(config: SyncConfig) -> str:
    """A short hash of what decides how a deal looks; stored with each link the deal was written under."""
    shape = config.model_dump(include=set(DEAL_SHAPE_KEYS))
    shape["department_map"] = sorted(
        (pair["fakturownia_department_id"], pair["crm_department_id"]) for pair in shape["department_map"]
    )
    shape["fakturownia_users"] = sorted(shape["fakturownia_users"], key=lambda user: user["id"])
    shape["version"] = DEAL_SHAPE_VERSION
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def corrected_invoice_id(invoice: Invoice) -> int | None:
    """The invoice a correction corrects (`invoice_id`, else `from_invoice_id`); None for any other kind.

    Only `correction` documents: a `final` invoice also carries `from_invoice_id` (its advance), and is a deal
    of its own."""
    if invoice.kind != "correction":
        return None
    for key in ("invoice_id", "from_invoice_id"):
        corrected = as_id(invoice.raw.get(key))
        if corrected is not None:
            return corrected
    return None


def deal_name(invoice: Invoice, *, out_of_kinds: bool = False) -> str:
    name = f"{KIND_LABELS.get(invoice.kind, 'Dokument')} {invoice.number}"
    if invoice.cancelled:
        name = f"{name} {CANCELLED_MARK}"
    return f"{name} {OUT_OF_KINDS_MARK}" if out_of_kinds else name


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
    corrections: Sequence[CorrectionRow] = (),
    out_of_kinds: bool = False,
) -> dict[str, Any]:
    """The deal for an invoice; with `corrections`, the amounts after them (never below zero: a CRM refuses a
    negative deal value), and the description names each correction."""
    name = deal_name(invoice, out_of_kinds=out_of_kinds)
    net = invoice.price_net + sum((c.price_net for c in corrections), Decimal(0))
    gross = invoice.price_gross + sum((c.price_gross for c in corrections), Decimal(0))
    price = max(gross if amount == "gross" else net, Decimal(0))
    description = (
        f"{name} z {invoice.issue_date.isoformat()}: netto {_amount(invoice.price_net)}, "
        f"brutto {_amount(invoice.price_gross)} {invoice.currency}."
    )
    if corrections:
        listed = ", ".join(
            f"{c.number} (netto {_amount(c.price_net)}, brutto {_amount(c.price_gross)})" for c in corrections
        )
        description += f" Korekty: {listed}. Po korektach: netto {_amount(net)}, brutto {_amount(gross)}."
    description += f" Fakturownia: {invoice_url}"
    deal: dict[str, Any] = {
        "name": name,
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
