"""Splitting a date range into backfill windows (calendar-aligned, both ends inclusive).

Fakturownia filters lists by business date at day granularity (`period=more&date_from&date_to`), so a
window is a pair of dates. Windows are aligned to calendar months, ISO weeks, quarters or years and clipped
to the requested range, so re-triggering a backfill with another range reuses the windows already done.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

WindowSize = Literal["day", "week", "month", "quarter", "year"]
WINDOW_SIZES: tuple[str, ...] = ("day", "week", "month", "quarter", "year")


def _next_start(start: date, size: WindowSize) -> date:
    if size == "day":
        return start + timedelta(days=1)
    if size == "week":
        return start + timedelta(days=7 - start.weekday())
    if size == "year":
        return date(start.year + 1, 1, 1)
    months = 1 if size == "month" else 3
    first_month = start.month - 1 if size == "month" else (start.month - 1) // 3 * 3
    index = start.year * 12 + first_month + months
    return date(index // 12, index % 12 + 1, 1)


def _check(date_from: date, date_to: date, size: str) -> None:
    if size not in WINDOW_SIZES:
        raise ValueError(f"window must be one of {', '.join(WINDOW_SIZES)}, got {size!r}")
    if date_to < date_from:
        raise ValueError(f"date_to {date_to} is before date_from {date_from}")


def count_windows(date_from: date, date_to: date, size: WindowSize = "month") -> int:
    """How many windows `split_windows` would return, computed without building them (a day-window range
    over millennia is refused by its count, not after the list has eaten the worker's memory)."""
    _check(date_from, date_to, size)
    if size == "day":
        return (date_to - date_from).days + 1
    if size == "week":
        mondays = (date_to - timedelta(days=date_to.weekday())) - (date_from - timedelta(days=date_from.weekday()))
        return mondays.days // 7 + 1
    if size == "year":
        return date_to.year - date_from.year + 1
    per_year, span = (12, 1) if size == "month" else (4, 3)
    return (
        (date_to.year * per_year + (date_to.month - 1) // span)
        - (date_from.year * per_year + (date_from.month - 1) // span)
        + 1
    )


def split_windows(date_from: date, date_to: date, size: WindowSize = "month") -> list[tuple[date, date]]:
    """[(first day, last day), ...] covering date_from..date_to exactly, in order."""
    _check(date_from, date_to, size)
    windows = []
    start = date_from
    while start <= date_to:
        end = min(_next_start(start, size) - timedelta(days=1), date_to)
        windows.append((start, end))
        start = end + timedelta(days=1)
    return windows


def window_containing(day: date, size: WindowSize = "month") -> tuple[date, date]:
    """The calendar window (unclipped) that `day` falls in: a backfill trimmed to the first and last invoice
    still plans the same aligned windows as one over the whole range, so the ledger of finished ones holds."""
    _check(day, day, size)
    if size == "day":
        start = day
    elif size == "week":
        start = day - timedelta(days=day.weekday())
    elif size == "year":
        start = date(day.year, 1, 1)
    else:
        month = day.month if size == "month" else (day.month - 1) // 3 * 3 + 1
        start = date(day.year, month, 1)
    return start, _next_start(start, size) - timedelta(days=1)
