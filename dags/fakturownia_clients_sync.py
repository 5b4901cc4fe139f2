"""
### Two-way client sync: Fakturownia ↔ CRM

Every 15 minutes, one client base in both systems: a client added or edited on either side appears or
changes on the other, duplicates are recognised instead of copied, and departments land where
`department_map` says. A Fakturownia `client:create|update` webhook starts a run at once (asset
`fakturownia://<account>/clients`); the run sweeps and re-reads clients from the API like any run.

**Tasks**
1. `check_setup` validates the Variable `fakturownia_sync_config` and checks both accounts
   (connections `fakturownia_default`, `sugester_default`) and the state DB (`fakturownia_sync_db`).
2. `sync_clients` reads Fakturownia clients changed since the last run (newest first, down to the cursor
   minus `lookback_minutes`) and every CRM client, matches them (link → external ids → NIP → e-mail),
   merges linked pairs field by field against the last synced snapshot (both sides changed: settled by
   `conflict_policy` and recorded), and creates unmatched clients on the other side. Its return value
   (XCom) and log hold the run summary.
3. `export_client_review` writes the open review list as CSV (Param `review_csv_path`, default
   `$AIRFLOW_HOME/fakturownia_sync_review/client_review.csv`).

**Never guessed.** A NIP or e-mail found on more than one client, duplicates within one system, a look-alike
name at the same post code with nothing to tell the two apart, and unmapped departments go to the review
list with both records and suggestions; nothing is written for them until a later run finds the data fixed.
A look-alike that different NIPs tell apart is created and noted (`possible_duplicate`); an invalid tax id
is noted, never a reason to hold. Nothing is ever deleted.

**Params.** `full` (default false) re-reads both systems completely; a run where nothing differs writes
nothing. `review_csv_path` (optional) overrides where the CSV goes. Both can be left as they are: the form
triggers with its defaults.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from fakturownia_sync.timing import SETUP_CHECK_TIMEOUT, TASK_EXECUTION_TIMEOUT
from fakturownia_sync_airflow import tasks, webhooks
from fakturownia_sync_airflow.alerts import CALLBACKS
from fakturownia_sync_airflow.assets import (
    CRM_CLIENTS,
    FAKTUROWNIA_CLIENTS,
    FAKTUROWNIA_WRITES,
    record_fakturownia_writes,
)
from fakturownia_sync_airflow.tasks import OWNER


@dag(
    dag_id="fakturownia_clients_sync",
    # Every 15 minutes, and at once when a Fakturownia webhook records an event on the asset; events that
    # arrive while a run is going fold into the next run (max_active_runs=1), which sweeps as any run does.
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/15 * * * *", timezone="UTC"), assets=FAKTUROWNIA_CLIENTS
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="Two-way client sync between Fakturownia and the CRM; exports the client review list as CSV.",
    doc_md=__doc__,
    tags=["fakturownia", "crm", "sync", "clients"],
    default_args={
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": TASK_EXECUTION_TIMEOUT,
        **CALLBACKS,  # alerts: a task failed for good, a list grew past its threshold
    },
    params={
        "full": Param(
            False,
            type="boolean",
            title="Full re-read",
            description="Re-read every client of both systems instead of only those changed since the last run; "
            "a run where nothing differs writes nothing.",
        ),
        "review_csv_path": Param(
            None,
            type=["null", "string"],
            title="Review CSV file or folder (optional)",
            description="Where the client review list is written: a file, or a folder ending in '/', relative to "
            "the export folder ([fakturownia_sync] review_export_folder, else $AIRFLOW_HOME) or inside it. "
            "Empty: fakturownia_sync_review/client_review.csv there. A path outside it fails the export, "
            "naming this Param.",
        ),
    },
)
def fakturownia_clients_sync() -> None:
    # check_setup holds the pool of the run's main task: it calls both APIs, and never waits for another pool.
    @task(pool="fakturownia_api", retries=0, execution_timeout=SETUP_CHECK_TIMEOUT, multiple_outputs=False)
    def check_setup() -> dict:
        return tasks.check_setup()

    # Writes to Fakturownia are recorded only when there were some (FAKTUROWNIA_WRITES): this DAG runs on
    # the Fakturownia clients asset, and an event after every run would start it again at once.
    @task(
        pool="fakturownia_api",
        execution_timeout=TASK_EXECUTION_TIMEOUT,
        multiple_outputs=False,
        inlets=[FAKTUROWNIA_CLIENTS, CRM_CLIENTS],
        outlets=[CRM_CLIENTS, FAKTUROWNIA_WRITES],
    )
    def sync_clients(params: dict[str, Any] | None = None, triggering_asset_events=None, outlet_events=None) -> dict:
        webhooks.folded_events(triggering_asset_events)
        summary = tasks.sync_clients(full=bool((params or {}).get("full")))
        record_fakturownia_writes(outlet_events, summary)
        return summary

    @task(retries=1, multiple_outputs=False)  # the state DB only: no API, no pool
    def export_client_review(params: dict[str, Any] | None = None) -> dict:
        return tasks.export_client_review((params or {}).get("review_csv_path") or None)

    check_setup() >> sync_clients() >> export_client_review()


fakturownia_clients_sync()
