"""Typed views of the Fakturownia records the engine reads, parsed defensively.

The API sends money as strings, timestamps with `+01:00`/`+02:00` offsets and unset dates as `""` or
null; a record that cannot be read raises `RecordError` with a reason, so it is quarantined, not dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fakturownia_sync.errors import RecordError
from fakturownia_sync.ids import as_id


def parse_timestamp(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 string with offset; None for empty or unreadable values."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _date(value: Any, field: str, record_id: Any) -> date:
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise RecordError(
            "malformed_date", f"invoice {record_id}: {field} {value!r} is not a YYYY-MM-DD date"
        ) from None


def _money(value: Any, field: str, record_id: Any) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise RecordError("malformed_amount", f"invoice {record_id}: {field} {value!r} is not a number") from None
    if not amount.is_finite():
        raise RecordError("malformed_amount", f"invoice {record_id}: {field} {value!r} is not a number")
    return amount


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


@dataclass(frozen=True)
class Party:
    """A client card or an invoice's buyer block, in the fields matching and client creation need."""

    name: str = ""
    shortcut: str = ""
    tax_no: str = ""
    email: str = ""
    phone: str = ""
    mobile_phone: str = ""
    street: str = ""
    post_code: str = ""
    city: str = ""
    country: str = ""
    first_name: str = ""
    last_name: str = ""
    note: str = ""
    company: bool = True
    department_id: int | None = None
    external_id: str = ""

    @classmethod
    def from_client(cls, raw: dict[str, Any]) -> Party:
        return cls(
            name=_text(raw.get("name")),
            shortcut=_text(raw.get("shortcut")),
            tax_no=_text(raw.get("tax_no")),
            email=_text(raw.get("email")),
            phone=_text(raw.get("phone")),
            mobile_phone=_text(raw.get("mobile_phone")),
            street=_text(raw.get("street")),
            post_code=_text(raw.get("post_code")),
            city=_text(raw.get("city")),
            country=_text(raw.get("country")),
            first_name=_text(raw.get("first_name")),
            last_name=_text(raw.get("last_name")),
            note=_text(raw.get("note")),
            company=raw.get("company") not in (False, "0", 0, "false"),
            department_id=as_id(raw.get("department_id")),
            external_id=_text(raw.get("external_id")),
        )

    @classmethod
    def from_invoice_buyer(cls, raw: dict[str, Any]) -> Party:
        return cls(
            name=_text(raw.get("buyer_name")),
            tax_no=_text(raw.get("buyer_tax_no")),
            email=_text(raw.get("buyer_email")),
            phone=_text(raw.get("buyer_phone")),
            street=_text(raw.get("buyer_street")),
            post_code=_text(raw.get("buyer_post_code")),
            city=_text(raw.get("buyer_city")),
            country=_text(raw.get("buyer_country")),
            first_name=_text(raw.get("buyer_first_name")),
            last_name=_text(raw.get("buyer_last_name")),
            note=_text(raw.get("buyer_note")),
            company=raw.get("buyer_company") not in (False, "0", 0, "false"),
        )


@dataclass(frozen=True)
class Invoice:
    id: int
    number: str
    kind: str
    income: bool
    cancelled: bool
    issue_date: date
    currency: str
    price_net: Decimal
    price_gross: Decimal
    client_id: int | None
    department_id: int | None
    updated_at: datetime | None
    buyer: Party
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # as the API sent it


def parse_invoice(raw: dict[str, Any]) -> Invoice:
    """Read an invoice as the list or get endpoint returns it; raises `RecordError` when it is unusable."""
    record_id = raw.get("id")
    try:
        invoice_id = int(record_id)
    except (TypeError, ValueError):
        raise RecordError("malformed_record", f"invoice without a usable id: {record_id!r}") from None
    income = raw.get("income", True)
    return Invoice(
        id=invoice_id,
        number=_text(raw.get("number")) or f"#{invoice_id}",
        kind=_text(raw.get("kind")) or "vat",
        income=income not in (False, "0", 0, "false", "no"),
        cancelled=raw.get("cancelled") in (True, "1", 1, "true") or raw.get("status") == "cancelled",
        issue_date=_date(raw.get("issue_date"), "issue_date", invoice_id),
        currency=_text(raw.get("currency")) or "PLN",
        price_net=_money(raw.get("price_net", "0"), "price_net", invoice_id),
        price_gross=_money(raw.get("price_gross", "0"), "price_gross", invoice_id),
        client_id=as_id(raw.get("client_id")),
        department_id=as_id(raw.get("department_id")),
        updated_at=parse_timestamp(raw.get("updated_at")),
        buyer=Party.from_invoice_buyer(raw),
        raw=raw,
    )
