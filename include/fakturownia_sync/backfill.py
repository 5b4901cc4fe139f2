"""Historical backfill: a date range split into windows, each window brought across once.

The backfill shares the scheduled sync's machinery (the same engine, claims, external ids and quarantine),
so running both at once duplicates nothing. A ledger in the state DB records every finished window; a
re-trigger skips those unless `reprocess` is set. A dry run reads everything, writes nothing (neither to
the APIs nor to the state DB) and reports what would be created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Any

from fakturownia_sync.config import INVOICE_KINDS, SyncConfig
from fakturownia_sync.errors import ConfigError, SyncError
from fakturownia_sync.fakturownia_client import PER_PAGE as FAKTUROWNIA_PER_PAGE
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.state import StateStore
from fakturownia_sync.windows import WINDOW_SIZES, WindowSize, count_windows, split_windows, window_containing

ENTITIES = ("clients", "invoices")
MAX_WINDOWS = 1024  # Airflow's default [core] max_map_length; the task passes the configured one
# The Params form of the DAG checks the same years with this pattern (JSON schema cannot compare dates).
DATE_PATTERN = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
# Invoices of this century: bounds that keep every date a date (9999-12-31 + one day is not) and every
# window count small enough to compute; the DAG's Params form says the same.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2100, 12, 31)


class WindowIncomplete(SyncError):
    """Some invoices of the window were deferred (another run is writing them); a retry finishes them."""


@dataclass(frozen=True)
class BackfillRequest:
    date_from: date
    date_to: date
    entities: tuple[str, ...]
    invoice_kinds: tuple[str, ...]
    window: WindowSize
    dry_run: bool
    reprocess: bool

    @property
    def scope(self) -> str:
        """What besides the dates defines a window's work: the ledger keys finished windows by it."""
        return ",".join(sorted(self.invoice_kinds))

    @classmethod
    def from_params(cls, params: dict[str, Any], config: SyncConfig, today: date) -> BackfillRequest:
        """Validate the DAG's Params; every problem is reported by the Param's name."""

        def day(name: str, default: date | None = None) -> date:
            value = params.get(name)
            if value in (None, "") and default is not None:
                return default
            try:
                parsed = date.fromisoformat(str(value))
            except ValueError:
                raise ConfigError(f"Param '{name}' must be a date YYYY-MM-DD, got {value!r}") from None
            if not EARLIEST_DATE <= parsed <= LATEST_DATE:
                raise ConfigError(
                    f"Param '{name}' must be between {EARLIEST_DATE} and {LATEST_DATE}, got {parsed.isoformat()}"
                )
            return parsed

        date_to = day("date_to", today)
        # No date_from: the 1st of January three years back, decided now and not when the DAG file is parsed.
        date_from = day("date_from", max(date(date_to.year - 3, 1, 1), EARLIEST_DATE))
        if date_to < date_from:
            raise ConfigError(f"Param 'date_to' ({date_to}) is before 'date_from' ({date_from})")
        entities = tuple(params.get("entities") or ENTITIES)
        if unknown := [e for e in entities if e not in ENTITIES]:
            raise ConfigError(f"Param 'entities' has unknown value(s) {unknown}; allowed: {list(ENTITIES)}")
        kinds = tuple(params.get("invoice_kinds") or config.invoice_kinds)
        if unknown := [k for k in kinds if k not in INVOICE_KINDS]:
            raise ConfigError(f"Param 'invoice_kinds' has unknown kind(s) {unknown}")
        window = params.get("window") or "month"
        if window not in WINDOW_SIZES:
            raise ConfigError(f"Param 'window' must be one of {list(WINDOW_SIZES)}, got {window!r}")
        return cls(
            date_from=date_from,
            date_to=date_to,
            entities=entities,
            invoice_kinds=kinds,
            window=window,
            dry_run=bool(params.get("dry_run")),
            reprocess=bool(params.get("reprocess")),
        )


def _issue_dates(page: list[dict[str, Any]]) -> list[date]:
    found = []
    for raw in page:
        try:
            found.append(date.fromisoformat(str(raw.get("issue_date"))))
        except ValueError:
            continue  # a malformed date is in no window either
    return found


def issue_date_bounds(fakturownia: FakturowniaClient, request: BackfillRequest) -> tuple[date, date] | None:
    """The first and last issue date of the selected invoices in the requested range (two calls), or None
    when there are none; where the answer cannot be trusted, that side stays the range's own bound.

    The docs list `order=issue_date` but say nothing of the `.desc` suffix. So an answer counts only if its
    page came back in the order asked for (issue dates never going the wrong way, and either the whole
    list or a page spanning more than one date, so an ignored order cannot pass as one); otherwise the
    backfill plans windows up to the range's end, as it did before it asked."""
    first_day, last_day = request.date_from.isoformat(), request.date_to.isoformat()
    kinds = list(request.invoice_kinds)
    oldest = fakturownia.first_invoice_page_by_issue_date(first_day, last_day, kinds, newest=False)
    if not oldest:
        return None  # the documented date and kind filters found nothing to bring across
    newest = fakturownia.first_invoice_page_by_issue_date(first_day, last_day, kinds, newest=True)
    up, down = _issue_dates(oldest), _issue_dates(newest)

    def trusted(dates: list[date], page: list[dict[str, Any]], ascending: bool) -> bool:
        ordered = all((a <= b) if ascending else (a >= b) for a, b in pairwise(dates))
        complete = len(page) < FAKTUROWNIA_PER_PAGE
        return bool(dates) and ordered and (complete or dates[0] != dates[-1])

    low = up[0] if trusted(up, oldest, True) else request.date_from
    high = down[0] if trusted(down, newest, False) else request.date_to
    low, high = max(low, request.date_from), min(high, request.date_to)
    return (low, high) if low <= high else (request.date_from, request.date_to)


def plan_invoice_windows(
    request: BackfillRequest,
    store: StateStore,
    max_windows: int = MAX_WINDOWS,
    *,
    issued: tuple[date, date] | bool | None = True,
) -> tuple[list[dict[str, str]], int]:
    """The windows still to do (as Airflow-mappable dicts) and how many were skipped as already finished.

    `issued` is what `issue_date_bounds` found: windows are planned only from the one holding the first
    invoice to the one holding the last (None: no invoice, no window; True: not asked, the whole range).
    Windows stay calendar-aligned and clipped to the range. `max_windows` is Airflow's
    `[core] max_map_length`; a range that splits into more windows is refused by its count, before any
    window is built."""
    if "invoices" not in request.entities or issued is None:
        return [], 0
    first, last = (request.date_from, request.date_to) if issued is True else issued  # type: ignore[misc]
    first = max(window_containing(first, request.window)[0], request.date_from)
    last = min(window_containing(last, request.window)[1], request.date_to)
    count = count_windows(first, last, request.window)
    if count > max_windows:
        raise ConfigError(
            f"Param 'window': {request.date_from}..{request.date_to} splits into {count} windows of one "
            f"{request.window} each, over Airflow's limit of {max_windows} mapped tasks; choose a longer "
            "'window' or a shorter date range"
        )
    windows = split_windows(first, last, request.window)
    done = set() if request.reprocess else store.finished_windows("invoices", request.scope)
    todo = [
        {"date_from": first.isoformat(), "date_to": last.isoformat()}
        for first, last in windows
        if (first, last) not in done
    ]
    return todo, len(windows) - len(todo)


def record_finished_window(
    request: BackfillRequest, store: StateStore, window: dict[str, str], summary: dict[str, Any]
) -> None:
    """Ledger a window that is completely done; an incomplete one raises so that the task is retried."""
    if summary.get("status") != "success":
        raise WindowIncomplete(
            f"window {window['date_from']}..{window['date_to']}: {summary.get('deals_deferred', 0)} invoice(s) "
            "are being written by another run right now; the retry of this task finishes them"
        )
    if not request.dry_run:
        first, last = date.fromisoformat(window["date_from"]), date.fromisoformat(window["date_to"])
        store.record_window("invoices", request.scope, first, last, summary)
