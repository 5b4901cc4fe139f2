"""Historical backfill: a date range split into windows, each window brought across once.

The backfill shares the scheduled sync's machinery (the same engine, claims, external ids and quarantine),
so running both at once duplicates nothing. A ledger in the state DB records every finished window; a
re-trigger skips those unless `reprocess` is set. A dry run reads everything, writes nothing (neither to
the APIs nor to the state DB) and reports what would be created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fakturownia_sync.config import INVOICE_KINDS, SyncConfig
from fakturownia_sync.errors import ConfigError, SyncError
from fakturownia_sync.state import StateStore
from fakturownia_sync.windows import WINDOW_SIZES, WindowSize, count_windows, split_windows

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


def plan_invoice_windows(
    request: BackfillRequest, store: StateStore, max_windows: int = MAX_WINDOWS
) -> tuple[list[dict[str, str]], int]:
    """The windows still to do (as Airflow-mappable dicts) and how many were skipped as already finished.

    `max_windows` is Airflow's `[core] max_map_length`; a range that splits into more windows is refused by
    its count, before any window is built."""
    if "invoices" not in request.entities:
        return [], 0
    count = count_windows(request.date_from, request.date_to, request.window)
    if count > max_windows:
        raise ConfigError(
            f"Param 'window': {request.date_from}..{request.date_to} splits into {count} windows of one "
            f"{request.window} each, over Airflow's limit of {max_windows} mapped tasks; choose a longer "
            "'window' or a shorter date range"
        )
    windows = split_windows(request.date_from, request.date_to, request.window)
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
