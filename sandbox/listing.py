"""List-endpoint semantics: paging, periods and ordering, as pure functions.

Kept apart from the store so the rules the sync depends on (``per_page``
capped at 100, the 12-month default ``period``, total ordering with id as the
tie-breaker) read in one place and can be checked without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sandbox.clock import add_months, parse_iso_date, parse_timestamp_ms

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100

PERIODS = frozenset(
    {"last_12_months", "this_month", "last_30_days", "last_month", "this_year", "last_year", "all", "more"}
)
DATE_FIELDS = frozenset({"issue_date", "paid_date", "transaction_date", "sell_date"})
TIMESTAMP_FIELDS = frozenset({"updated_at", "created_at"})
MONEY_FIELDS = frozenset({"price_net", "price_gross", "price_tax"})


@dataclass(frozen=True)
class Page:
    number: int
    size: int

    def slice(self, ids: list[int]) -> list[int]:
        start = (self.number - 1) * self.size
        return ids[start : start + self.size]


def _positive_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number > 0 else None


def parse_page(params: Mapping[str, str]) -> Page:
    """``page`` from 1, ``per_page`` 25 by default and silently capped at 100."""
    number = _positive_int(params.get("page")) or 1
    size = _positive_int(params.get("per_page")) or DEFAULT_PER_PAGE
    return Page(number, min(size, MAX_PER_PAGE))


def period_window(params: Mapping[str, str], today: date) -> tuple[date | None, date | None] | None:
    """Inclusive date bounds for ``period`` (None means no date filter).

    An unknown ``period`` falls back to the default, ``last_12_months``: a
    client that misspells ``all`` silently loses old documents, just as it
    would against the real service.
    """
    period = params.get("period") or "last_12_months"
    if period not in PERIODS:
        period = "last_12_months"
    if period == "all":
        return None
    if period == "last_12_months":
        return add_months(today, -12), today
    if period == "last_30_days":
        return today - timedelta(days=30), today
    if period == "this_month":
        first = today.replace(day=1)
        return first, add_months(first, 1) - timedelta(days=1)
    if period == "last_month":
        first = add_months(today.replace(day=1), -1)
        return first, today.replace(day=1) - timedelta(days=1)
    if period == "this_year":
        return date(today.year, 1, 1), date(today.year, 12, 31)
    if period == "last_year":
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    low = parse_iso_date(params.get("date_from"))
    high = parse_iso_date(params.get("date_to"))
    return (low, high) if (low or high) else None


def in_window(value: object, low: str | None, high: str | None) -> bool:
    """Whether a stored date falls in the bounds; malformed dates never do."""
    if not isinstance(value, str) or parse_iso_date(value) is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def parse_order(value: str | None, allowed: Iterable[str], default: str) -> tuple[str, bool]:
    """``field`` or ``field.desc`` → (field, descending); unknown values give the default."""
    allowed_set = frozenset(allowed)
    text = (value or "").strip()
    field, _, suffix = text.partition(".")
    if field not in allowed_set or suffix not in ("", "desc", "asc"):
        field, _, suffix = default.partition(".")
    return field, suffix == "desc"


def sort_key(field: str) -> Callable[[Any], Any]:
    """A comparable key for a stored value of ``field``.

    Timestamps compare as instants, not strings, because ``+01:00`` and
    ``+02:00`` offsets make string order wrong around DST changes.
    """
    if field in TIMESTAMP_FIELDS:
        return lambda value: parse_timestamp_ms(value) or 0
    if field in MONEY_FIELDS:

        def money(value: Any) -> Decimal:
            try:
                return Decimal(str(value))
            except ArithmeticError:
                return Decimal(0)

        return money
    if field == "id":
        return lambda value: value
    return lambda value: "" if value is None else str(value).casefold()


def ordered_ids(
    records: Mapping[int, Mapping[str, Any]],
    ids: list[int],
    field: str,
    descending: bool,
    defaults: Mapping[str, Any],
) -> list[int]:
    """Sort ids by ``field`` with the id as tie-breaker, so paging is total and stable."""
    if field == "id":
        return sorted(ids, reverse=descending)
    key = sort_key(field)
    fallback = defaults.get(field)
    return sorted(ids, key=lambda i: (key(records[i].get(field, fallback)), i), reverse=descending)


# -- lists that move while they are read ------------------------------------------------------------------

MOVING_LISTS = ("invoices", "clients", "crm_clients")


@dataclass
class ListMove:
    """Change one list just before its page read number ``after_reads + 1``: delete and insert records."""

    after_reads: int
    delete: int
    insert: int
    reads: int = 0


class ListMoves:
    """Planned changes to a list *between two page reads*, the way a person tidying drafts changes it.

    Offset paging over a list that shrinks skips records, so the sync under test must notice; tests arm a
    move with ``POST /_sandbox/list_moves`` (``{"list": "invoices", "after_reads": 1, "delete": 5,
    "insert": 3}``) and the store applies it when it builds that list for the next page read. Every list
    read counts, on either API (one sandbox process serves one pair of accounts); a move fires once.
    """

    def __init__(self) -> None:
        self._plans: dict[str, ListMove] = {}

    def arm(self, name: str, *, after_reads: int, delete: int, insert: int) -> ListMove:
        if name not in MOVING_LISTS:
            raise ValueError(f"unknown list {name!r}; known: {list(MOVING_LISTS)}")
        for label, value in (("after_reads", after_reads), ("delete", delete), ("insert", insert)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{label} must be a whole number >= 0")
        plan = ListMove(after_reads, delete, insert)
        self._plans[name] = plan
        return plan

    def due(self, name: str) -> ListMove | None:
        """Count one read of ``name``; the plan to apply before answering it, if this is the one."""
        plan = self._plans.get(name)
        if plan is None:
            return None
        plan.reads += 1
        if plan.reads <= plan.after_reads:
            return None
        del self._plans[name]
        return plan

    def pending(self) -> dict[str, dict[str, int]]:
        return {name: dict(plan.__dict__) for name, plan in self._plans.items()}


LIST_MOVES = ListMoves()
