"""What the Fakturownia invoice for a CRM deal looks like ("Dodaj fakturę"): a pure function of deal and config.

One position named after the deal, quantity 1, the deal's price taken as gross or net (`deal_invoicing.price`)
at the configured tax rate, in the deal's currency; kind, issue date (today) and payment term from the config;
the buyer is the Fakturownia client the caller found for the deal's CRM client; the seller department comes
through `DepartmentMap.to_fakturownia` (the one department rule, `no_department` included).

`oid` = the deal id with `oid_unique=yes`: Fakturownia itself refuses a second invoice for one deal, and a
create whose answer was lost is found again by `GET /invoices.json?oid=<deal id>`.

A deal that cannot become an invoice (no client, no or negative price, an unknown currency, an unmapped
department) raises `RecordError` with the reason; the run quarantines the deal and carries on.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fakturownia_sync.config import DealInvoicing
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import RecordError
from fakturownia_sync.ids import as_id

DEFAULT_CURRENCY = "PLN"  # what the CRM shows for a deal with no currency
# ISO 4217 codes in current use that Fakturownia accepts as an invoice currency.
KNOWN_CURRENCIES = frozenset(
    [
        "PLN", "EUR", "USD", "GBP", "CHF", "CZK", "DKK", "NOK", "SEK", "HUF", "RON", "BGN", "HRK", "UAH", "RUB", "BYN",
        "TRY", "ISK", "RSD", "BAM", "MKD", "ALL", "MDL", "GEL", "AMD", "AZN", "KZT", "CNY", "JPY", "KRW", "HKD", "SGD",
        "TWD", "THB", "VND", "IDR", "MYR", "PHP", "INR", "PKR", "ILS", "AED", "SAR", "QAR", "KWD", "BHD", "OMR", "EGP",
        "MAD", "TND", "ZAR", "NGN", "KES", "AUD", "NZD", "CAD", "MXN", "BRL", "ARS", "CLP", "COP", "PEN", "UYU",
    ]
)  # fmt: skip
MAX_PRICE = Decimal("1e12")


def deal_oid(deal_id: int) -> str:
    """The `oid` of the invoice made from a deal."""
    return str(int(deal_id))


def deal_id_of_oid(oid: Any) -> int | None:
    """The deal id an invoice's `oid` names when it was made from a deal (a plain positive integer), else None."""
    return as_id(oid)


def _price(deal: dict[str, Any]) -> Decimal:
    raw = deal.get("price")
    subject = f"deal {deal.get('id')}"
    if raw in (None, ""):
        raise RecordError("deal_without_price", f"{subject} has no price; set one and the next run invoices it")
    try:
        price = Decimal(str(raw).strip().replace(",", "."))
    except InvalidOperation:
        raise RecordError("deal_price_invalid", f"{subject}: price {raw!r} is not a number") from None
    if not price.is_finite():
        raise RecordError("deal_price_invalid", f"{subject}: price {raw!r} is not a number")
    if price < 0:
        raise RecordError("deal_price_negative", f"{subject}: price {price} is negative; an invoice cannot have it")
    if price == 0:
        raise RecordError("deal_without_price", f"{subject} has price 0; set one and the next run invoices it")
    if price >= MAX_PRICE:
        raise RecordError("deal_price_invalid", f"{subject}: price {price} is out of range")
    return price.quantize(Decimal("0.01"))


def deal_currency(deal: dict[str, Any]) -> str:
    raw = deal.get("currency")
    currency = str(raw).strip().upper() if raw not in (None, "") else DEFAULT_CURRENCY
    if currency not in KNOWN_CURRENCIES:
        raise RecordError(
            "deal_unknown_currency", f"deal {deal.get('id')}: currency {raw!r} is not a known ISO 4217 currency"
        )
    return currency


def check_deal(deal: dict[str, Any]) -> None:
    """Raise `RecordError` for a deal that cannot become an invoice, before any client is looked for."""
    if deal.get("client_id") in (None, "", 0):
        raise RecordError("deal_without_client", f"deal {deal.get('id')} has no client; pick one in the CRM")
    _price(deal)
    deal_currency(deal)


def _buyer_fields(card: dict[str, Any] | None) -> dict[str, Any]:
    """The buyer block from the client card, so the invoice reads right whether or not the API fills it in."""
    if not card:
        return {}
    name = card.get("name") or " ".join(filter(None, (card.get("first_name"), card.get("last_name"))))
    fields = {
        "buyer_name": name,
        "buyer_tax_no": card.get("tax_no"),
        "buyer_email": card.get("email"),
        "buyer_street": card.get("street"),
        "buyer_post_code": card.get("post_code"),
        "buyer_city": card.get("city"),
        "buyer_country": card.get("country"),
    }
    return {key: value for key, value in fields.items() if value not in (None, "")}


def invoice_payload(
    deal: dict[str, Any],
    *,
    fakturownia_client_id: int,
    client_card: dict[str, Any] | None,
    settings: DealInvoicing,
    departments: DepartmentMap,
    crm_department_id: int | None,
    today: date,
) -> dict[str, Any]:
    """The `invoice` object to POST for this deal (see the module docstring)."""
    check_deal(deal)
    deal_id = int(deal["id"])
    price = _price(deal)
    department_id = departments.to_fakturownia(crm_department_id, f"deal {deal_id}")
    name = str(deal.get("name") or "").strip() or f"Interes {deal_id}"
    position: dict[str, Any] = {"name": name, "quantity": 1, "tax": settings.tax}
    position["price_gross" if settings.price == "gross" else "price_net"] = f"{price}"
    invoice: dict[str, Any] = {
        "kind": settings.invoice_kind,
        "issue_date": today.isoformat(),
        "sell_date": today.isoformat(),
        "payment_to_kind": settings.payment_days,
        "payment_to": (today + timedelta(days=settings.payment_days)).isoformat(),
        "currency": deal_currency(deal),
        "client_id": int(fakturownia_client_id),
        **_buyer_fields(client_card),
        "oid": deal_oid(deal_id),
        "oid_unique": "yes",
        "positions": [position],
    }
    if department_id is not None:
        invoice["department_id"] = department_id
    return invoice
