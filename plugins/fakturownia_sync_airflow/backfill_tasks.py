"""Task bodies of `fakturownia_backfill`: client bases once, plan the windows, bring each across, add up.

The steps themselves are `fakturownia_sync.backfill_run`; a dry run runs them all in one task
(`dry_run_backfill`), since windows in separate tasks could not share what earlier windows would create.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from fakturownia_sync.backfill import MAX_WINDOWS, BackfillRequest
from fakturownia_sync.backfill_run import BackfillRun, backfill_totals, dry_run
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.errors import ApiAuthError, ConfigError
from fakturownia_sync.run_summary import render_summary
from fakturownia_sync_airflow import tasks
from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook, SyncStateHook

log = logging.getLogger(__name__)


def _request() -> tuple[BackfillRequest, SyncConfig]:
    config = tasks.load_sync_config()
    try:
        return BackfillRequest.from_params(get_current_context()["params"], config, date.today()), config
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None


def _owner(suffix: str = "") -> str:
    context = get_current_context()
    return f"{context['dag'].dag_id}/{context['run_id']}{suffix}"


def _run(request: BackfillRequest, config: SyncConfig) -> BackfillRun:
    fakturownia = FakturowniaHook(requests_per_minute=config.requests_per_minute.fakturownia).get_conn()
    crm = SugesterHook(requests_per_minute=config.requests_per_minute.sugester).get_conn()
    return BackfillRun(fakturownia, crm, SyncStateHook().get_conn(), config, request)


def backfill_clients() -> dict[str, Any]:
    """The `clients` entity: one full two-way client sync before the invoice windows, so that the windows
    find every client linked already; both client bases stay in the state DB for the windows."""
    request, config = _request()
    if "clients" not in request.entities:
        raise AirflowSkipException("Param 'entities' does not include clients")
    if request.dry_run:
        raise AirflowSkipException("dry run: the client sync runs, writing nothing, in dry_run_backfill")
    run = _run(request, config)
    try:
        summary = run.sync_clients(_owner("/clients"))
    except ApiAuthError as exc:
        raise AirflowFailException(f"{exc.api} rejected the API token during the backfill: {exc.message}") from None
    finally:
        run.store.close()
    log.info("Client sync summary:\n%s", render_summary(summary))
    return summary


def plan_backfill() -> list[dict[str, str]]:
    """The windows between the first and the last invoice of the range (a dry run plans in its own task)."""
    request, config = _request()
    if request.dry_run:
        log.info("Dry run: every window runs in dry_run_backfill, none as a task of its own.")
        return []
    run = _run(request, config)
    try:
        if "clients" not in request.entities and "invoices" in request.entities:
            run.read_client_bases()  # the windows match buyers against both bases, read once here
        limit = conf.getint("core", "max_map_length", fallback=MAX_WINDOWS)
        windows, skipped = run.plan(max_windows=limit)
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    finally:
        run.store.close()
    log.info(
        "Backfill %s..%s by %s, kinds %s%s: %d window(s) to do, %d skipped as finished earlier%s.",
        request.date_from,
        request.date_to,
        request.window,
        ", ".join(request.invoice_kinds),
        "",
        len(windows),
        skipped,
        "" if request.reprocess or not skipped else " (set reprocess to redo them)",
    )
    return windows


def backfill_invoice_window(window: dict[str, str]) -> dict[str, Any]:
    request, config = _request()
    # Claims belong to this mapped task: parallel windows of one run never take over each other's claims.
    owner = _owner(f"/{get_current_context()['ti'].map_index}")
    run = _run(request, config)
    try:
        summary = run.run_window(window, owner)
    except ApiAuthError as exc:
        raise AirflowFailException(f"{exc.api} rejected the API token during the backfill: {exc.message}") from None
    finally:
        run.store.close()
    log.info("Window %s..%s:\n%s", window["date_from"], window["date_to"], render_summary(summary))
    return summary


def dry_run_backfill() -> dict[str, Any]:
    """A dry run, whole: the client sync and every window in this one task, writing nothing anywhere; the
    counts are the real run's (see `backfill_run`). Per-window counts are logged and returned."""
    request, config = _request()
    if not request.dry_run:
        raise AirflowSkipException("not a dry run: the windows run as tasks of their own")
    run = _run(request, config)

    def logged(window: dict[str, str], summary: dict[str, Any]) -> None:
        log.info("Window %s..%s (dry run):\n%s", window["date_from"], window["date_to"], render_summary(summary))

    try:
        limit = conf.getint("core", "max_map_length", fallback=MAX_WINDOWS)
        result = dry_run(
            run.fakturownia,
            run.crm,
            run.store,
            config,
            request,
            owner=_owner("/dry"),
            max_windows=limit,
            on_window=logged,
        )
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    except ApiAuthError as exc:
        raise AirflowFailException(f"{exc.api} rejected the API token during the backfill: {exc.message}") from None
    finally:
        run.store.close()
    totals = backfill_totals(result["clients"], result["windows"])
    log.info(
        "Dry run of %s..%s by %s: %d window(s), %d skipped as finished earlier; would write %s.\n%s",
        request.date_from,
        request.date_to,
        request.window,
        len(result["windows"]),
        result["skipped"],
        result["would_write"] or "nothing",
        render_summary(totals),
    )
    return {**result, "totals": totals}


def report_backfill(summaries: Any, dry: Any = None) -> dict[str, Any]:
    """Totals over all windows of this run (windows skipped as finished earlier are not in them); a dry
    run's come from its one task."""
    if dry:
        log.info("Backfill totals (dry run, nothing written):\n%s", render_summary(dry["totals"]))
        return dry["totals"]
    totals: dict[str, Any] = {"windows": 0}
    for summary in summaries or []:
        totals["windows"] += 1
        for key, value in summary.items():
            if isinstance(value, bool) or key in ("duration_seconds",):
                totals[key] = value if isinstance(value, bool) else round(totals.get(key, 0) + value, 3)
            elif isinstance(value, int | float):
                totals[key] = totals.get(key, 0) + value
            elif isinstance(value, dict) and key != "quarantine_open":
                totals[key] = dict(Counter(totals.get(key, {})) + Counter(value))
    log.info("Backfill totals:\n%s", render_summary(totals))
    return totals
