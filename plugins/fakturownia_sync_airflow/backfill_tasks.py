"""Task bodies of `fakturownia_backfill`: plan the windows, bring each across, add up the results."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from fakturownia_sync.backfill import MAX_WINDOWS, BackfillRequest, plan_invoice_windows, record_finished_window
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.errors import ApiAuthError, ConfigError
from fakturownia_sync.invoices_to_deals import InvoicesToDeals
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


def backfill_clients() -> dict[str, Any]:
    """The `clients` entity: one full two-way client sync before the invoice windows, so that the windows
    find every client linked already (no client-card reads, no client creates inside the windows)."""
    request, _config = _request()
    if "clients" not in request.entities:
        raise AirflowSkipException("Param 'entities' does not include clients")
    if request.dry_run:
        raise AirflowSkipException(
            "dry run: the client sync is not run (it has no dry mode); the invoice windows count the CRM "
            "clients they would create"
        )
    return tasks.sync_clients(full=True)


def plan_backfill() -> list[dict[str, str]]:
    request, _config = _request()
    store = SyncStateHook().get_conn()
    try:
        limit = conf.getint("core", "max_map_length", fallback=MAX_WINDOWS)
        windows, skipped = plan_invoice_windows(request, store, max_windows=limit)
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    finally:
        store.close()
    log.info(
        "Backfill %s..%s by %s, kinds %s%s: %d window(s) to do, %d skipped as finished earlier%s.",
        request.date_from,
        request.date_to,
        request.window,
        ", ".join(request.invoice_kinds),
        " (dry run: nothing will be written)" if request.dry_run else "",
        len(windows),
        skipped,
        "" if request.reprocess or not skipped else " (set reprocess to redo them)",
    )
    return windows


def backfill_invoice_window(window: dict[str, str]) -> dict[str, Any]:
    request, config = _request()
    context = get_current_context()
    # Claims belong to this mapped task: parallel windows of one run never take over each other's claims.
    owner = f"{context['dag'].dag_id}/{context['run_id']}/{context['ti'].map_index}"
    fakturownia = FakturowniaHook(requests_per_minute=config.requests_per_minute.fakturownia).get_conn()
    crm = SugesterHook(requests_per_minute=config.requests_per_minute.sugester).get_conn()
    store = SyncStateHook().get_conn()
    try:
        engine = InvoicesToDeals(
            fakturownia,
            crm,
            store,
            config,
            owner=owner,
            dry_run=request.dry_run,
            invoice_kinds=list(request.invoice_kinds),
        )
        summary = engine.run_window(date.fromisoformat(window["date_from"]), date.fromisoformat(window["date_to"]))
        log.info("Window %s..%s:\n%s", window["date_from"], window["date_to"], render_summary(summary))
        record_finished_window(request, store, window, summary)
    except ApiAuthError as exc:
        raise AirflowFailException(f"{exc.api} rejected the API token during the backfill: {exc.message}") from None
    finally:
        store.close()
    return summary


def report_backfill(summaries: Any) -> dict[str, Any]:
    """Totals over all windows of this run (windows skipped as finished earlier are not in them)."""
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
