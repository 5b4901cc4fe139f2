"""In-memory records of both vendors, their write rules and list caches.

Records live in dicts keyed by id. List endpoints keep the filtered and sorted
id list per (filters, order) so paging through 200,000 invoices only slices a
cached list; any write to a collection drops that collection's cache.
Everything runs on the event loop thread, so no locking is needed.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sandbox.clock import WriteClock, date_of_ms, format_ms, parse_iso_date, parse_timestamp_ms
from sandbox.listing import LIST_MOVES, ListMove, in_window, ordered_ids
from sandbox.money import decimal_to_str, round_cents, to_decimal
from sandbox.records import (
    CLIENT_DEFAULTS,
    CLIENT_WRITABLE,
    CRM_CLIENT_DEFAULTS,
    CRM_CLIENT_WRITABLE,
    DEAL_DEFAULTS,
    DEAL_WRITABLE,
    INVOICE_DEFAULTS,
    INVOICE_WRITABLE,
    POSITION_DEFAULTS,
)
from sandbox.seed import NUMBER_PREFIX, buyer_block, crm_deal_statuses, seller_block

CACHE_SIZE = 256
NUMBER_PATTERN = re.compile(r"^(\S+) (\d+)/(\d{2})/(\d{4})$")
POSITION_WRITABLE = frozenset(POSITION_DEFAULTS) - {"id", "invoice_id", "created_at", "updated_at"}
POSITION_NAME_MAX = 255
TRUE_STRINGS = frozenset({"1", "true", "yes", "on"})
# Event kinds a Fakturownia webhook may subscribe to (reference/fakturownia-api.md §7).
WEBHOOK_KINDS = frozenset(
    f"{subject}:{action}" for subject in ("client", "invoice", "product") for action in ("create", "update", "destroy")
)


class NotFound(Exception):
    """The record does not exist (rendered as the vendor's 404)."""


class ValidationFailed(Exception):
    """A write was refused; ``errors`` maps a field to its messages (the vendor's 422)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def as_int(value: object) -> int | None:
    """An id from JSON or a query string (``17``, ``"17"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def as_bool(value: object) -> bool:
    """Rails-style boolean coercion: ``true``, ``"1"``, ``"yes"`` and friends."""
    if isinstance(value, str):
        return value.strip().lower() in TRUE_STRINGS
    return bool(value)


class _ListCache:
    """A small LRU of sorted id lists, cleared whenever its collection changes."""

    def __init__(self) -> None:
        self._entries: OrderedDict[object, list[int]] = OrderedDict()

    def get(self, key: object, build: Callable[[], list[int]]) -> list[int]:
        ids = self._entries.get(key)
        if ids is None:
            ids = build()
            self._entries[key] = ids
            if len(self._entries) > CACHE_SIZE:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return ids

    def clear(self) -> None:
        self._entries.clear()


def _newest_timestamp(collections: Iterable[Iterable[dict[str, Any]]]) -> int:
    newest = 0
    for records in collections:
        for record in records:
            newest = max(newest, parse_timestamp_ms(record.get("updated_at")) or 0)
    return newest


@dataclass(frozen=True)
class InvoiceFilter:
    """The invoice list query, hashable so it can key the cache."""

    income: bool = True
    date_field: str = "issue_date"
    date_from: str | None = None
    date_to: str | None = None
    dated: bool = False
    kinds: frozenset[str] | None = None
    client_id: int | None = None
    ids: frozenset[int] | None = None
    number: str | None = None
    invoice_id: int | None = None
    from_invoice_id: int | None = None
    oid: str | None = None

    def matches(self, invoice: dict[str, Any]) -> bool:
        get = invoice.get
        if self.oid is not None and str(get("oid") or "") != self.oid:
            return False
        if get("income", True) is not self.income:
            return False
        if self.kinds is not None and get("kind", "vat") not in self.kinds:
            return False
        if self.client_id is not None and get("client_id") != self.client_id:
            return False
        if self.number is not None and get("number") != self.number:
            return False
        if self.invoice_id is not None and get("invoice_id") != self.invoice_id:
            return False
        if self.from_invoice_id is not None and get("from_invoice_id") != self.from_invoice_id:
            return False
        return not self.dated or in_window(get(self.date_field), self.date_from, self.date_to)


@dataclass(frozen=True)
class ClientFilter:
    external_id: str | None = None
    tax_no: str | None = None
    email: str | None = None
    name: str | None = None
    shortcut: str | None = None

    def matches(self, client: dict[str, Any]) -> bool:
        if self.external_id is not None and client.get("external_id") != self.external_id:
            return False
        if self.tax_no is not None and client.get("tax_no") != self.tax_no:
            return False
        if self.email is not None and (client.get("email") or "").strip().casefold() != self.email:
            return False
        if self.name is not None and self.name not in (client.get("name") or "").casefold():
            return False
        return self.shortcut is None or self.shortcut in (client.get("shortcut") or "").casefold()


class FakturowniaStore:
    """Clients, invoices (sales and cost) and departments of one Fakturownia account."""

    def __init__(self, state: dict[str, Any], seed: int = 0) -> None:
        self.departments: list[dict[str, Any]] = state["departments"]
        self.clients: dict[int, dict[str, Any]] = {c["id"]: c for c in state["clients"]}
        self.invoices: dict[int, dict[str, Any]] = {i["id"]: i for i in state["invoices"]}
        next_ids = state.get("next_ids", {})
        self._next_client = next_ids.get("client", max(self.clients, default=0) + 1)
        self._next_invoice = next_ids.get("invoice", max(self.invoices, default=0) + 1)
        self._next_position = next_ids.get("position", 1)
        # The webhook registry (`GET/POST /webhooks.json`): see "webhooks" below for its shape.
        self.webhooks: dict[int, dict[str, Any]] = {w["id"]: w for w in state.get("webhooks", [])}
        self._next_webhook = next_ids.get("webhook", max(self.webhooks, default=0) + 1)
        self.webhooks_api_status: int | None = None  # 403/404: the account's plan or token has no webhook API
        self._rng = random.Random(f"{seed}:fakturownia-writes")
        self.clock = WriteClock(_newest_timestamp([self.clients.values(), self.invoices.values()]))
        self._invoice_lists = _ListCache()
        self._client_lists = _ListCache()
        self._numbers: dict[tuple[str, int, int], int] | None = None

    def to_state(self) -> dict[str, Any]:
        return {
            "departments": self.departments,
            "clients": list(self.clients.values()),
            "invoices": list(self.invoices.values()),
            "webhooks": list(self.webhooks.values()),
            "next_ids": {
                "client": self._next_client,
                "invoice": self._next_invoice,
                "position": self._next_position,
                "webhook": self._next_webhook,
            },
        }

    # -- reads ---------------------------------------------------------------

    def invoice_ids(self, query: InvoiceFilter, order: tuple[str, bool]) -> list[int]:
        move = LIST_MOVES.due("invoices")
        if move is not None:
            self._move_invoices(self.invoice_ids(query, order), move)

        def build() -> list[int]:
            candidates = [i for i in query.ids if i in self.invoices] if query.ids is not None else list(self.invoices)
            invoices = self.invoices
            matching = [i for i in candidates if query.matches(invoices[i])]
            return ordered_ids(invoices, matching, order[0], order[1], INVOICE_DEFAULTS)

        return self._invoice_lists.get((query, order), build)

    def client_ids(self, query: ClientFilter, order: tuple[str, bool]) -> list[int]:
        move = LIST_MOVES.due("clients")
        if move is not None:
            self._move_clients(self.client_ids(query, order), move)

        def build() -> list[int]:
            matching = [i for i, c in self.clients.items() if query.matches(c)]
            return ordered_ids(self.clients, matching, order[0], order[1], CLIENT_DEFAULTS)

        return self._client_lists.get((query, order), build)

    def invoice(self, invoice_id: int) -> dict[str, Any]:
        try:
            return self.invoices[invoice_id]
        except KeyError:
            raise NotFound(invoice_id) from None

    def client(self, client_id: int) -> dict[str, Any]:
        try:
            return self.clients[client_id]
        except KeyError:
            raise NotFound(client_id) from None

    def _move_invoices(self, listed: list[int], move: ListMove) -> None:
        """A list moving between two page reads: delete records from its first page, insert copies."""
        sources = [dict(self.invoices[i]) for i in listed[: move.insert] if i in self.invoices]  # before deleting
        for invoice_id in list(listed[10 : 10 + move.delete] or listed[: move.delete]):
            self.delete_invoice(invoice_id)
        for source in sources:
            keep = {k: v for k, v in source.items() if k not in ("id", "number", "token", "positions", "oid")}
            self.create_invoice({**keep, "positions": [dict(p) for p in source.get("positions") or []]})

    def _move_clients(self, listed: list[int], move: ListMove) -> None:
        for client_id in list(listed[10 : 10 + move.delete] or listed[: move.delete]):
            self.clients.pop(client_id, None)
        for _ in range(move.insert):
            number = self._next_client
            self.create_client({"name": f"Klient dopisany {number}", "email": f"new{number}@example.pl"})
        self._client_lists.clear()

    # -- invoice writes ------------------------------------------------------

    def create_invoice(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create an invoice the way the service does: buyer from the client card, totals from lines."""
        data = {k: v for k, v in fields.items() if k in INVOICE_WRITABLE}
        client = self.clients.get(as_int(data.get("client_id")) or 0)
        if client is None and not str(data.get("buyer_name") or "").strip():
            raise ValidationFailed({"buyer_name": ["- nie może być puste"]})
        self._check_create(fields)
        now_ms = self.clock.now_ms()
        now = format_ms(now_ms)
        today = date_of_ms(now_ms)
        invoice_id = self._next_invoice
        self._next_invoice += 1

        record: dict[str, Any] = {"id": invoice_id}
        if client is not None:
            record.update(buyer_block(client))
            record["client_id"] = client["id"]
            record["client_company"] = client["company"]
        record.update(self._seller_block(as_int(data.get("department_id"))))
        record.update(data)
        self._coerce_invoice(record)
        record.setdefault("kind", "vat")
        issue = record.get("issue_date") or today.isoformat()
        record["issue_date"] = issue
        for field in ("sell_date", "transaction_date"):
            record.setdefault(field, issue)
        issue_day = parse_iso_date(issue) or today
        record["issue_year"] = issue_day.year
        if not record.get("payment_to"):
            days = as_int(record.get("payment_to_kind")) or 14
            record["payment_to"] = (issue_day + timedelta(days=days)).isoformat()
        if not record.get("number"):
            record["number"] = self._next_number(record["kind"], issue_day)
        record["token"] = self._token()
        record["from_api"] = True
        record["created_at"] = now
        record["updated_at"] = now
        positions = fields.get("positions")
        record["positions"] = []
        if isinstance(positions, list) and positions:
            self._apply_positions(record, positions, now)
        self.invoices[invoice_id] = record
        self._invoice_lists.clear()
        return record

    def _check_create(self, fields: dict[str, Any]) -> None:
        """`oid_unique=yes` refuses a second invoice with the same `oid` (the vendor's "useful for shop sync");
        a position name over 255 characters is refused as the vendor's validation does."""
        oid = str(fields.get("oid") or "").strip()
        taken = oid and any(str(invoice.get("oid") or "") == oid for invoice in self.invoices.values())
        if taken and as_bool(fields.get("oid_unique", False)):
            raise ValidationFailed({"oid": ["- jest już zajęte"]})
        positions = fields.get("positions") if isinstance(fields.get("positions"), list) else []
        if any(isinstance(p, dict) and len(str(p.get("name") or "")) > POSITION_NAME_MAX for p in positions):
            raise ValidationFailed(
                {"positions.name": [f"- pole jest za długie (maksymalna ilość znaków: {POSITION_NAME_MAX})"]}
            )

    def update_invoice(self, invoice_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        record = self.invoice(invoice_id)
        data = {k: v for k, v in fields.items() if k in INVOICE_WRITABLE}
        now = self.clock.now()
        record.update(data)
        self._coerce_invoice(record)
        positions = fields.get("positions")
        if isinstance(positions, list):
            record["positions"] = list(record.get("positions", []))
            self._apply_positions(record, positions, now)
        issue_day = parse_iso_date(record.get("issue_date"))
        if issue_day is not None:
            record["issue_year"] = issue_day.year
        record["updated_at"] = now
        self._invoice_lists.clear()
        return record

    def delete_invoice(self, invoice_id: int) -> None:
        self.invoice(invoice_id)
        del self.invoices[invoice_id]
        self._invoice_lists.clear()

    # -- client writes -------------------------------------------------------

    def create_client(self, fields: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in fields.items() if k in CLIENT_WRITABLE}
        if not str(data.get("name") or "").strip():
            raise ValidationFailed({"name": ["- nie może być puste"]})
        now = self.clock.now()
        record = {**CLIENT_DEFAULTS, **data}
        record["id"] = self._next_client
        self._next_client += 1
        record["company"] = as_bool(record["company"])
        record["department_id"] = as_int(record["department_id"])
        record["external_id"] = _optional_str(record["external_id"])
        record["token"] = self._token()
        record["created_at"] = now
        record["updated_at"] = now
        self.clients[record["id"]] = record
        self._client_lists.clear()
        return record

    def update_client(self, client_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        record = self.client(client_id)
        data = {k: v for k, v in fields.items() if k in CLIENT_WRITABLE}
        if "name" in data and not str(data["name"] or "").strip():
            raise ValidationFailed({"name": ["- nie może być puste"]})
        record.update(data)
        if "company" in data:
            record["company"] = as_bool(record["company"])
        if "department_id" in data:
            record["department_id"] = as_int(record["department_id"])
        if "external_id" in data:
            record["external_id"] = _optional_str(record["external_id"])
        record["updated_at"] = self.clock.now()
        self._client_lists.clear()
        return record

    # -- webhooks (registry) -------------------------------------------------
    #
    # `self.webhooks` maps id -> {"id", "kind", "url", "api_token", "active", "created_at", "updated_at"}:
    # `kind` is one of WEBHOOK_KINDS (e.g. "invoice:create"), `url` where the account would POST the event,
    # `api_token` the webhook's own token (sent in the event's body so the receiver can authenticate it; it is
    # not the account's API token). Whatever delivers events reads `active_webhooks(kind)`.

    def active_webhooks(self, kind: str) -> list[dict[str, Any]]:
        """The registered, active webhooks of one event kind, oldest first: who an event of `kind` goes to."""
        return [w for _, w in sorted(self.webhooks.items()) if w["kind"] == kind and w["active"]]

    def create_webhook(self, fields: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        kind = str(fields.get("kind") or "")
        url = str(fields.get("url") or "")
        if kind not in WEBHOOK_KINDS:
            errors["kind"] = ["jest nieprawidłowe"]
        if not url.startswith(("http://", "https://")):
            errors["url"] = ["jest nieprawidłowe"]
        if errors:
            raise ValidationFailed(errors)
        now = self.clock.now()
        record = {
            "id": self._next_webhook,
            "kind": kind,
            "url": url,
            "api_token": str(fields.get("api_token") or ""),
            "active": as_bool(fields.get("active", True)),
            "created_at": now,
            "updated_at": now,
        }
        self._next_webhook += 1
        self.webhooks[record["id"]] = record
        return record

    # -- helpers -------------------------------------------------------------

    def _token(self) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(self._rng.choices(alphabet, k=20))

    def _seller_block(self, department_id: int | None) -> dict[str, Any]:
        department = next((d for d in self.departments if d["id"] == department_id), None)
        if department is None:
            department = next((d for d in self.departments if d.get("main")), None)
        if department is None:
            return {}
        block = seller_block(department)
        block["department_id"] = department_id if department["id"] == department_id else None
        return block

    def _next_number(self, kind: str, day: date) -> str:
        if self._numbers is None:
            self._numbers = {}
            for invoice in self.invoices.values():
                match = NUMBER_PATTERN.match(str(invoice.get("number") or ""))
                if match:
                    prefix, counter, month, year = match.groups()
                    key = (prefix, int(year), int(month))
                    self._numbers[key] = max(self._numbers.get(key, 0), int(counter))
        prefix = NUMBER_PREFIX.get(kind, "FV")
        key = (prefix, day.year, day.month)
        self._numbers[key] = self._numbers.get(key, 0) + 1
        return f"{prefix} {self._numbers[key]}/{day.month:02d}/{day.year}"

    @staticmethod
    def _coerce_invoice(record: dict[str, Any]) -> None:
        """Store request values in response types (ids as ints, flags as booleans, money as strings)."""
        for field in ("client_id", "department_id", "invoice_id", "from_invoice_id"):
            if field in record:
                record[field] = as_int(record[field])
        for field in ("income", "cancelled"):
            if field in record:
                record[field] = as_bool(record[field])
        for field in ("price_net", "price_gross", "price_tax", "paid"):
            if field in record:
                amount = to_decimal(record[field])
                record[field] = decimal_to_str(amount) if amount is not None else "0.0"

    def _apply_positions(self, record: dict[str, Any], changes: list[Any], now: str) -> None:
        """Edit lines by id, drop them with ``_destroy``, add those without id; then re-total."""
        lines: list[dict[str, Any]] = record["positions"]
        by_id = {line["id"]: index for index, line in enumerate(lines)}
        removed: set[int] = set()
        for change in changes:
            if not isinstance(change, dict):
                continue
            line_id = as_int(change.get("id"))
            data = {k: v for k, v in change.items() if k in POSITION_WRITABLE}
            if line_id is not None and line_id in by_id:
                if as_bool(change.get("_destroy", False)):
                    removed.add(line_id)
                    continue
                index = by_id[line_id]
                lines[index] = _priced_line({**lines[index], **data, "updated_at": now})
            else:
                line = {"id": self._next_position, "invoice_id": record["id"], **data}
                line.update(created_at=now, updated_at=now)
                self._next_position += 1
                lines.append(_priced_line(line))
        record["positions"] = [line for line in lines if line["id"] not in removed]
        net = sum((to_decimal(p["total_price_net"]) or Decimal(0) for p in record["positions"]), Decimal(0))
        gross = sum((to_decimal(p["total_price_gross"]) or Decimal(0) for p in record["positions"]), Decimal(0))
        record["price_net"] = decimal_to_str(net)
        record["price_gross"] = decimal_to_str(gross)
        record["price_tax"] = decimal_to_str(gross - net)
        record["product_cache"] = ", ".join(str(p.get("name") or "") for p in record["positions"])


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _priced_line(line: dict[str, Any]) -> dict[str, Any]:
    """Fill a line's unit and total prices from whichever of them the caller sent."""
    quantity = to_decimal(line.get("quantity"))
    quantity = Decimal(1) if quantity is None else quantity
    tax_text = str(line.get("tax", "23")).strip()
    rate = to_decimal(tax_text)
    rate = Decimal(0) if rate is None else rate  # "zw", "np": no VAT
    factor = (Decimal(100) + rate) / Decimal(100)
    unit_net = to_decimal(line.get("price_net"))
    unit_gross = to_decimal(line.get("price_gross"))
    total_gross = to_decimal(line.get("total_price_gross"))
    if unit_net is not None:
        total_net = round_cents(unit_net * quantity)
        total_gross = round_cents(total_net * factor)
        unit_gross = round_cents(unit_net * factor)
    elif unit_gross is not None:
        total_gross = round_cents(unit_gross * quantity)
        total_net = round_cents(total_gross / factor)
        unit_net = round_cents(unit_gross / factor)
    elif total_gross is not None and quantity:
        total_gross = round_cents(total_gross)
        total_net = round_cents(total_gross / factor)
        unit_gross = round_cents(total_gross / quantity)
        unit_net = round_cents(unit_gross / factor)
    else:
        unit_net = unit_gross = total_net = total_gross = Decimal(0)
    return {
        **line,
        "quantity": str(quantity.normalize()) if quantity % 1 else f"{int(quantity)}.0",
        "tax": tax_text,
        "price_net": decimal_to_str(unit_net),
        "price_gross": decimal_to_str(unit_gross),
        "total_price_net": decimal_to_str(total_net),
        "total_price_gross": decimal_to_str(total_gross),
    }


class SugesterStore:
    """Clients, deals, departments and users of one Sugester CRM account."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.departments: list[dict[str, Any]] = state["departments"]
        self.users: list[dict[str, Any]] = state["users"]
        # Deal statuses (pipeline stages); state files saved before they existed get the seeded ones.
        self.statuses: list[dict[str, Any]] = state.get("statuses") or crm_deal_statuses()
        self.clients: dict[int, dict[str, Any]] = {c["id"]: c for c in state["clients"]}
        self.deals: dict[int, dict[str, Any]] = {d["id"]: d for d in state["deals"]}
        next_ids = state.get("next_ids", {})
        self._next_client = next_ids.get("client", max(self.clients, default=0) + 1)
        self._next_deal = next_ids.get("deal", max(self.deals, default=0) + 1)
        self.clock = WriteClock(_newest_timestamp([self.clients.values(), self.deals.values()]))
        self._client_order: list[int] | None = None
        self._deal_order: list[int] | None = None

    def to_state(self) -> dict[str, Any]:
        return {
            "departments": self.departments,
            "users": self.users,
            "statuses": self.statuses,
            "clients": list(self.clients.values()),
            "deals": list(self.deals.values()),
            "next_ids": {"client": self._next_client, "deal": self._next_deal},
        }

    # -- reads ---------------------------------------------------------------

    def client_ids(self) -> list[int]:
        move = LIST_MOVES.due("crm_clients")
        if move is not None:
            listed = self.client_ids()
            for client_id in list(listed[10 : 10 + move.delete] or listed[: move.delete]):
                self.clients.pop(client_id, None)
            for _ in range(move.insert):
                self.create_client({"name": f"Klient CRM dopisany {self._next_client}"})
            self._client_order = None
        if self._client_order is None:
            self._client_order = sorted(self.clients)
        return self._client_order

    def deal_ids(self) -> list[int]:
        if self._deal_order is None:
            self._deal_order = sorted(self.deals)
        return self._deal_order

    def client(self, client_id: int) -> dict[str, Any]:
        try:
            return self.clients[client_id]
        except KeyError:
            raise NotFound(client_id) from None

    def deal(self, deal_id: int) -> dict[str, Any]:
        try:
            return self.deals[deal_id]
        except KeyError:
            raise NotFound(deal_id) from None

    # -- writes --------------------------------------------------------------

    def _new_record(self, fields: dict[str, Any], writable: Any, check: Any, defaults: dict, coerce: Any) -> dict:
        """A validated record for a create: writable fields over the defaults, `external_ids` merged."""
        data = {k: v for k, v in fields.items() if k in writable}
        errors = check(data, creating=True)
        if errors:
            raise ValidationFailed(errors)
        record = {**defaults, **data, "external_ids": {}}
        _merge_external_ids(record, data.get("external_ids"))
        coerce(record)
        record["created_at"] = record["updated_at"] = self.clock.now()
        return record

    def _updated_record(self, record: dict, fields: dict[str, Any], writable: Any, check: Any, coerce: Any) -> dict:
        """Apply a partial update in place: writable fields replaced, `external_ids` merged, time bumped."""
        data = {k: v for k, v in fields.items() if k in writable}
        errors = check(data, creating=False)
        if errors:
            raise ValidationFailed(errors)
        external_ids = data.pop("external_ids", None)
        record.update(data)
        record["external_ids"] = dict(record.get("external_ids") or {})
        _merge_external_ids(record, external_ids)
        coerce(record)
        record["updated_at"] = self.clock.now()
        return record

    def create_client(self, fields: dict[str, Any]) -> dict[str, Any]:
        record = self._new_record(
            fields, CRM_CLIENT_WRITABLE, self._client_errors, CRM_CLIENT_DEFAULTS, self._coerce_client
        )
        record["id"] = self._next_client
        self._next_client += 1
        self.clients[record["id"]] = record
        self._client_order = None
        return record

    def update_client(self, client_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return self._updated_record(
            self.client(client_id), fields, CRM_CLIENT_WRITABLE, self._client_errors, self._coerce_client
        )

    def create_deal(self, fields: dict[str, Any]) -> dict[str, Any]:
        record = self._new_record(fields, DEAL_WRITABLE, self._deal_errors, DEAL_DEFAULTS, self._coerce_deal)
        record["id"] = self._next_deal
        self._next_deal += 1
        self.deals[record["id"]] = record
        self._deal_order = None
        return record

    def update_deal(self, deal_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return self._updated_record(self.deal(deal_id), fields, DEAL_WRITABLE, self._deal_errors, self._coerce_deal)

    def delete_deal(self, deal_id: int) -> None:
        self.deal(deal_id)
        del self.deals[deal_id]
        self._deal_order = None

    # -- validation ----------------------------------------------------------

    def _client_errors(self, data: dict[str, Any], *, creating: bool) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if (creating or "name" in data) and not str(data.get("name") or "").strip():
            errors["name"] = ["nie może być puste"]
        if "external_ids" in data and not isinstance(data["external_ids"], (dict, type(None))):
            errors["external_ids"] = ["jest nieprawidłowe"]
        department = data.get("department_id")
        if department is not None and not self._is_department(department):
            errors["department_id"] = ["nie istnieje"]
        return errors

    def _deal_errors(self, data: dict[str, Any], *, creating: bool) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if (creating or "name" in data) and not str(data.get("name") or "").strip():
            errors["name"] = ["nie może być puste"]
        if data.get("price") is not None:
            price = to_decimal(data["price"])
            if price is None:
                errors["price"] = ["nie jest liczbą"]
            elif price < 0:
                errors["price"] = ["musi być większe lub równe 0"]
            elif price >= Decimal("1e12"):
                errors["price"] = ["musi być mniejsze od 1000000000000"]
        client = data.get("client_id")
        if client is not None and as_int(client) not in self.clients:
            errors["client_id"] = ["nie istnieje"]
        department = data.get("department_id")
        if department is not None and not self._is_department(department):
            errors["department_id"] = ["nie istnieje"]
        if "external_ids" in data and not isinstance(data["external_ids"], (dict, type(None))):
            errors["external_ids"] = ["jest nieprawidłowe"]
        status = data.get("status_id")
        if status is not None and not any(s["id"] == as_int(status) and s["kind"] == "deal" for s in self.statuses):
            errors["status_id"] = ["nie istnieje"]
        responsible = data.get("responsible_id")
        if responsible is not None and not any(u["id"] == as_int(responsible) for u in self.users):
            errors["responsible_id"] = ["nie istnieje"]
        return errors

    def statuses_of_kind(self, kind: str | None) -> list[dict[str, Any]]:
        return [status for status in self.statuses if kind in (None, "", status["kind"])]

    def _is_department(self, value: object) -> bool:
        department_id = as_int(value)
        return any(d["id"] == department_id for d in self.departments)

    @staticmethod
    def _coerce_client(record: dict[str, Any]) -> None:
        for field in ("department_id", "responsible_id"):
            record[field] = as_int(record.get(field))
        record["external_id"] = _optional_str(record.get("external_id"))
        record["company"] = as_bool(record.get("company", True))

    @staticmethod
    def _coerce_deal(record: dict[str, Any]) -> None:
        for field in ("client_id", "department_id", "status_id", "responsible_id"):
            record[field] = as_int(record.get(field))
        price = to_decimal(record.get("price"))
        record["price"] = f"{round_cents(price if price is not None else Decimal(0)):.2f}"


def _merge_external_ids(record: dict[str, Any], incoming: object) -> None:
    """Merge ``{app_code: value}`` into the stored map; a null value removes the key."""
    if not isinstance(incoming, dict):
        return
    merged = dict(record.get("external_ids") or {})
    for code, value in incoming.items():
        if value is None:
            merged.pop(str(code), None)
        else:
            merged[str(code)] = str(value)
    record["external_ids"] = merged
