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
  before the windows, so that they find every client linked; `invoices` runs the windows. Empty: both.
- `invoice_kinds`: empty (the default) takes the kinds of the config Variable (`invoice_kinds`).
- **Windows are labelled by their dates** in the grid (`2024-01-01..2024-01-31`), and `report` adds them up in
  one XCom: invoices seen = deals created + recovered + updated + unchanged + skipped + quarantined + deferred,
  every count shown (zeros too), with `not_accounted` for any difference.

CLI: `airflow dags trigger fakturownia_backfill -c '{"date_from": "2024-01-01", "date_to": "2024-12-31"}'`
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from fakturownia_sync.backfill import DATE_PATTERN, EARLIEST_DATE, ENTITIES, LATEST_DATE
from fakturownia_sync.config import INVOICE_KINDS
from fakturownia_sync.timing import BACKFILL_TASK_TIMEOUT, SETUP_CHECK_TIMEOUT
from fakturownia_sync.windows import WINDOW_SIZES
from fakturownia_sync_airflow import backfill_tasks, tasks
from fakturownia_sync_airflow.alerts import CALLBACKS
from fakturownia_sync_airflow.assets import (
    CRM_CLIENTS,
    CRM_DEALS,
    FAKTUROWNIA_CLIENTS,
    FAKTUROWNIA_INVOICES,
    FAKTUROWNIA_WRITES,
    record_fakturownia_writes,
)
from fakturownia_sync_airflow.tasks import OWNER

# The grid's label of a mapped window, e.g. "2024-01-01..2024-01-31" (rendered before the task runs, too).
WINDOW_LABEL = "{{ task.op_kwargs['window']['date_from'] }}..{{ task.op_kwargs['window']['date_to'] }}"


@dag(
    dag_id="fakturownia_backfill",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    description="By hand: brings Fakturownia invoices of a date range across as CRM deals, window by window.",
    doc_md=__doc__,
    tags=["fakturownia", "crm", "backfill"],
    default_args={
        "owner": OWNER,
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": BACKFILL_TASK_TIMEOUT,
        **CALLBACKS,  # alerts: a task failed for good, a list grew past its threshold
    },
    params={
        # Dates are bounded by a pattern (years 2000-2100) because JSON schema cannot compare dates; no default
        # is computed here (the DAG file is parsed all the time): empty values are decided when the run starts.
        # `format: date` makes the form show a date picker, so a date cannot be mistyped there.
        "date_from": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="Issued from (optional)",
            description=f"First issue date (YYYY-MM-DD, {EARLIEST_DATE} to {LATEST_DATE}); "
            "empty: 1 January three years before 'Issued to'.",
        ),
        "date_to": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="Issued to (optional)",
            description=f"Last issue date, inclusive (YYYY-MM-DD, {EARLIEST_DATE} to {LATEST_DATE}); empty: today.",
        ),
        # Lists are multi-selects: `examples` gives the form its choices, `items.enum` refuses anything else.
        "entities": Param(
            list(ENTITIES),
            type=["null", "array"],
            items={"type": "string", "enum": list(ENTITIES)},
            uniqueItems=True,
            examples=list(ENTITIES),
            values_display={
                "clients": "clients (a full two-way client sync first)",
                "invoices": "invoices (deals, window by window)",
            },
            title="What to bring across",
            description="clients: one full two-way client sync before the windows; invoices: the invoice "
            "windows. Empty: both.",
        ),
        "invoice_kinds": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "enum": list(INVOICE_KINDS)},
            uniqueItems=True,
            examples=list(INVOICE_KINDS),
            title="Invoice kinds (optional)",
            description="Kinds of invoice to bring across. Empty: the kinds of the config Variable "
            "fakturownia_sync_config (its invoice_kinds).",
        ),
        "window": Param(
            "month",
            type="string",
            enum=list(WINDOW_SIZES),
            title="Window size",
            description="The range is cut into calendar windows of this size, one mapped task each: at most "
            "[core] max_map_length (1024 by default) windows.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run (write nothing)",
            description="Read everything and write nothing, to the APIs or the state DB; the report counts what "
            "the real run would do.",
        ),
        "reprocess": Param(
            False,
            type="boolean",
            title="Redo windows finished earlier",
            description="Windows a previous backfill finished (same kinds) are skipped unless this is set.",
        ),
    },
)
def fakturownia_backfill() -> None:
    # Every task calling an API holds a slot of the pool of the API it uses most; `report` calls none.
    @task(pool="fakturownia_api", retries=0, execution_timeout=SETUP_CHECK_TIMEOUT, multiple_outputs=False)
    def check_setup() -> dict:
        return tasks.check_setup()

    @task(
        pool="fakturownia_api",
        execution_timeout=BACKFILL_TASK_TIMEOUT,
        multiple_outputs=False,
        inlets=[FAKTUROWNIA_CLIENTS, CRM_CLIENTS],
        outlets=[CRM_CLIENTS, FAKTUROWNIA_WRITES],  # Fakturownia writes recorded only when there were some
    )
    def sync_all_clients(outlet_events=None) -> dict:
        summary = backfill_tasks.backfill_clients()
        record_fakturownia_writes(outlet_events, summary)
        return summary

    @task(pool="fakturownia_api", retries=0, trigger_rule="none_failed")
    def plan_windows() -> list[dict]:
        return backfill_tasks.plan_backfill()

    @task(
        pool="sugester_api",
        max_active_tis_per_dagrun=4,
        execution_timeout=BACKFILL_TASK_TIMEOUT,
        map_index_template=WINDOW_LABEL,
        multiple_outputs=False,
        inlets=[FAKTUROWNIA_INVOICES, FAKTUROWNIA_CLIENTS],
        outlets=[CRM_DEALS, CRM_CLIENTS],
    )
    def backfill_window(window: dict) -> dict:
        return backfill_tasks.backfill_invoice_window(window)

    @task(
        pool="fakturownia_api",
        execution_timeout=timedelta(hours=6),
        multiple_outputs=False,
        inlets=[FAKTUROWNIA_INVOICES, FAKTUROWNIA_CLIENTS, CRM_CLIENTS],  # reads only: writes go to a scratch copy
    )
    def dry_run_backfill() -> dict:
        return backfill_tasks.dry_run_backfill()

    @task(trigger_rule="none_failed", multiple_outputs=False)
    def report(summaries: list[dict], clients: dict | None, dry: dict | None) -> dict:
        return backfill_tasks.report_backfill(summaries, dry, clients=clients)

    setup = check_setup()
    clients = sync_all_clients()
    windows = plan_windows()
    dry = dry_run_backfill()
    setup >> clients >> windows
    setup >> dry
    report(backfill_window.expand(window=windows), clients, dry)


fakturownia_backfill()
