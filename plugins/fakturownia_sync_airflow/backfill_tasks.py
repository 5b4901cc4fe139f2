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


def _skip(reason: str) -> AirflowSkipException:
    """A skip that says why in the task's log, outside any collapsed group, before the task ends."""
    log.info("Skipped: %s.", reason)
    return AirflowSkipException(reason)


def backfill_clients() -> dict[str, Any]:
    """The `clients` entity: one full two-way client sync before the invoice windows, so that the windows
    find every client linked already; both client bases stay in the state DB for the windows."""
    request, config = _request()
    if "clients" not in request.entities:
        raise _skip("Param 'entities' does not include clients, so no client sync runs before the windows")
    if request.dry_run:
        raise _skip("dry run: the client sync runs, writing nothing, in the task dry_run_backfill")
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
        log.info("Dry run: no window to plan here; every window runs in dry_run_backfill, none as a task of its own.")
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
        raise _skip("not a dry run (Param 'dry_run' is off): the windows run as tasks of their own")
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


# The outcomes an invoice seen by a window can have, each a counter of the window's summary: together they
# account for every invoice seen (`reconcile`).
OUTCOMES = ("deals_created", "deals_recovered", "deals_updated", "deals_unchanged")


def reconcile(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Invoices seen, and what became of them, over the windows: every count present, zeros too.

    seen = created + recovered + updated + unchanged + skipped + quarantined + deferred; `not_accounted` is
    what is left (0 when the counts add up), never hidden. `deals_recovered` (a deal an earlier, interrupted
    attempt had created, found and linked) and `deals_deferred` (another run was creating the deal right
    then; the window is retried) are outcomes too, so they are terms of the sum."""
    counts = dict.fromkeys(("invoices_seen", *OUTCOMES, "skipped_cost", "skipped_cancelled", "deals_deferred"), 0)
    skipped_by_kind: Counter[str] = Counter()
    quarantined: Counter[str] = Counter()
    for summary in windows:
        for key in counts:
            counts[key] += int(summary.get(key) or 0)
        skipped_by_kind.update(summary.get("skipped_by_kind") or {})
        quarantined.update(summary.get("quarantined_by_reason") or {})
    skipped = counts["skipped_cost"] + counts["skipped_cancelled"] + sum(skipped_by_kind.values())
    accounted = sum(counts[key] for key in OUTCOMES) + skipped + sum(quarantined.values()) + counts["deals_deferred"]
    return {
        "invoices_seen": counts["invoices_seen"],
        **{key: counts[key] for key in OUTCOMES},
        "invoices_skipped": skipped,
        "invoices_quarantined": sum(quarantined.values()),
        "deals_deferred": counts["deals_deferred"],
        "not_accounted": counts["invoices_seen"] - accounted,
        "skipped_cost": counts["skipped_cost"],
        "skipped_cancelled": counts["skipped_cancelled"],
        "skipped_by_kind": dict(sorted(skipped_by_kind.items())),
        "quarantined_by_reason": dict(sorted(quarantined.items())),
    }


def report_backfill(summaries: Any, dry: Any = None, *, clients: Any = None) -> dict[str, Any]:
    """The run's totals as one XCom (windows skipped as finished earlier are not in them): the same keys for
    a dry run (from its one task) and a real one (the client step and every mapped window)."""
    if dry:
        clients, windows = dry.get("clients"), list(dry.get("windows") or [])
    else:
        windows = [summary for summary in summaries or [] if summary]
    totals = backfill_totals(clients or None, windows)
    report = {"dry_run": bool(dry), "windows": len(windows), **reconcile(windows)}
    report.update({key: value for key, value in totals.items() if key not in report})
    log.info(
        "Backfill%s: %d window(s); invoices seen %d = deals created %d + recovered %d + updated %d + unchanged %d "
        "+ skipped %d + quarantined %d + deferred %d%s.",
        " (dry run, nothing written)" if dry else "",
        report["windows"],
        report["invoices_seen"],
        report["deals_created"],
        report["deals_recovered"],
        report["deals_updated"],
        report["deals_unchanged"],
        report["invoices_skipped"],
        report["invoices_quarantined"],
        report["deals_deferred"],
        "" if report["not_accounted"] == 0 else f" + {report['not_accounted']} not accounted for",
    )
    if report["not_accounted"]:
        log.warning(
            "%d invoice(s) seen are in no outcome count: the engine counts as seen only an invoice met again "
            "unchanged while still quarantined, and a correction that rewrites no deal (corrections_applied in "
            "a dry run, corrections_without_deal, or none when met again unchanged).",
            report["not_accounted"],
        )
    log.info("Backfill totals:\n%s", render_summary(report))
    return report
