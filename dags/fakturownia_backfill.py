"""
### Fakturownia history → CRM (backfill)

Triggered by hand (**Trigger DAG** shows the form). Brings invoices issued between `date_from` and
`date_to` across as CRM deals, one window (`month` by default) per mapped task, so the grid shows progress
window by window and a failed window is retried alone.

- **Finished windows are recorded** in the state DB; triggering again skips them unless `reprocess` is set.
- **Safe next to the scheduled DAGs**: the same claims and external ids as `fakturownia_invoices_to_deals`,
  so running both at once duplicates nothing.
- **Costs about one sweep**: both client bases are read once per run (by the `clients` step, or once
  before the windows) and kept in the state DB, where every window finds them; windows are planned only
  from the first to the last invoice of the range (two calls ask for their issue dates).
- **`dry_run`** reads everything and writes nothing (neither to the APIs nor to the state DB): the client
  sync and every window run in the one task `dry_run_backfill`, the real code against a scratch copy of
  the state with writes answered locally, so its counts are exactly what the real run then does.
- **Throughput**: each window writes to the CRM with `crm_write_concurrency` threads inside the
  `requests_per_minute` budget of `fakturownia_sync_config`; windows run in the `sugester_api` pool, whose
  slots bound how many processes call the CRM at once across all workers.
- `entities`: `clients` runs the full two-way client sync once (`fakturownia_clients_sync` with `full`)
  before the windows, so that they find every client linked; `invoices` runs the windows.

CLI: `airflow dags trigger fakturownia_backfill -c '{"date_from": "2024-01-01", "date_to": "2024-12-31"}'`
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from fakturownia_sync.backfill import DATE_PATTERN, EARLIEST_DATE, LATEST_DATE
from fakturownia_sync.config import DEFAULT_INVOICE_KINDS, INVOICE_KINDS
from fakturownia_sync.timing import BACKFILL_TASK_TIMEOUT, SETUP_CHECK_TIMEOUT
from fakturownia_sync.windows import WINDOW_SIZES
from fakturownia_sync_airflow import backfill_tasks, tasks


@dag(
    dag_id="fakturownia_backfill",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["fakturownia", "crm", "backfill"],
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1), "execution_timeout": BACKFILL_TASK_TIMEOUT},
    params={
        # Dates are bounded by a pattern (years 2000-2100) because JSON schema cannot compare dates; no default
        # is computed here (the DAG file is parsed all the time): empty values are decided when the run starts.
        "date_from": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="Issued from",
            description=f"First issue date (YYYY-MM-DD, {EARLIEST_DATE} to {LATEST_DATE}); "
            "empty: 1 January three years before 'Issued to'.",
        ),
        "date_to": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="Issued to",
            description=f"Last issue date, inclusive (YYYY-MM-DD, up to {LATEST_DATE}); empty: today.",
        ),
        "entities": Param(
            ["clients", "invoices"],
            type="array",
            items={"type": "string", "enum": ["clients", "invoices"]},
            title="What to bring across",
        ),
        "invoice_kinds": Param(
            DEFAULT_INVOICE_KINDS,
            type="array",
            items={"type": "string", "enum": list(INVOICE_KINDS)},
            title="Invoice kinds",
            description="Defaults to the usual kinds; the config Variable's kinds apply when this is emptied.",
        ),
        "window": Param(
            "month",
            enum=list(WINDOW_SIZES),
            title="Window size",
            description="One mapped task per window: at most [core] max_map_length (1024 by default) windows.",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run (write nothing)"),
        "reprocess": Param(False, type="boolean", title="Redo windows finished earlier"),
    },
)
def fakturownia_backfill() -> None:
    @task(retries=0, execution_timeout=SETUP_CHECK_TIMEOUT)
    def check_setup() -> dict:
        return tasks.check_setup()

    @task(pool="fakturownia_api", execution_timeout=BACKFILL_TASK_TIMEOUT)
    def sync_all_clients() -> dict:
        return backfill_tasks.backfill_clients()

    @task(retries=0, trigger_rule="none_failed")
    def plan_windows() -> list[dict]:
        return backfill_tasks.plan_backfill()

    @task(pool="sugester_api", max_active_tis_per_dagrun=4, execution_timeout=BACKFILL_TASK_TIMEOUT)
    def backfill_window(window: dict) -> dict:
        return backfill_tasks.backfill_invoice_window(window)

    @task(pool="fakturownia_api", execution_timeout=timedelta(hours=6))
    def dry_run_backfill() -> dict:
        return backfill_tasks.dry_run_backfill()

    @task(trigger_rule="none_failed")
    def report(summaries: list[dict], dry: dict | None) -> dict:
        return backfill_tasks.report_backfill(summaries, dry)

    setup = check_setup()
    windows = plan_windows()
    dry = dry_run_backfill()
    setup >> sync_all_clients() >> windows
    setup >> dry
    report(backfill_window.expand(window=windows), dry)


fakturownia_backfill()
