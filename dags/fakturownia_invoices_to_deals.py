"""
### Fakturownia invoices → CRM deals

Every 15 minutes, each Fakturownia sales invoice of the configured kinds becomes exactly one deal in the
CRM, on the right client, with the invoice's number, amount, currency, department and a link back to it.
A Fakturownia `invoice:create|update` webhook starts a run at once (asset `fakturownia://<account>/invoices`);
the run sweeps and re-reads invoices from the API like any run, so the 15-minute runs catch any lost webhook.

**Tasks**
1. `check_setup` validates the Variable `fakturownia_sync_config` and checks both accounts
   (connections `fakturownia_default`, `sugester_default`) and the state DB (`fakturownia_sync_db`).
   A wrong token, a wrong account or a bad config key fails here, in one sentence.
2. `sync_invoices_to_deals` reads invoices changed since the last run (newest first, down to the cursor
   minus `lookback_minutes`), finds or creates the CRM client, creates or updates the deal. Its return
   value (XCom) and log hold the run summary.

**Nothing duplicated, nothing lost.** Deals carry `external_ids.fakturownia_invoice_id`; a retry or a
re-run after a crash finds what an earlier attempt created, and an empty state DB is rebuilt from the CRM's
external ids. An invoice that cannot be handled (unmapped department, malformed date, a buyer the client
rules cannot decide, refused by the CRM) is quarantined with its reason in the state DB; the run carries on
and a later run re-reads and retries it. A buyer with no card, NIP or e-mail gets its deal by the
`anonymous_buyers` policy. Deleting an invoice never deletes its deal.

Config keys: `invoice_kinds`, `department_map`, `no_department`, `deal_amount` (`gross`/`net`),
`anonymous_buyers`, `lookback_minutes`, `requests_per_minute`. See the README.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from fakturownia_sync.timing import SETUP_CHECK_TIMEOUT, TASK_EXECUTION_TIMEOUT
from fakturownia_sync_airflow import tasks, webhooks
from fakturownia_sync_airflow.alerts import CALLBACKS
from fakturownia_sync_airflow.assets import CRM_CLIENTS, CRM_DEALS, FAKTUROWNIA_CLIENTS, FAKTUROWNIA_INVOICES
from fakturownia_sync_airflow.tasks import OWNER


@dag(
    dag_id="fakturownia_invoices_to_deals",
    # Every 15 minutes, and at once when a Fakturownia webhook records an event on the asset; events that
    # arrive while a run is going fold into the next run (max_active_runs=1), which sweeps as any run does.
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/15 * * * *", timezone="UTC"), assets=FAKTUROWNIA_INVOICES
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="Each Fakturownia sales invoice of the configured kinds becomes exactly one CRM deal.",
    doc_md=__doc__,
    tags=["fakturownia", "crm", "sync"],
    default_args={
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": TASK_EXECUTION_TIMEOUT,
        **CALLBACKS,  # alerts: a task failed for good, a list grew past its threshold
    },
)
def fakturownia_invoices_to_deals() -> None:
    # check_setup holds the pool of the run's main task: it calls both APIs, and never waits for another pool.
    @task(pool="sugester_api", retries=0, execution_timeout=SETUP_CHECK_TIMEOUT, multiple_outputs=False)
    def check_setup() -> dict:
        return tasks.check_setup()

    @task(
        pool="sugester_api",
        execution_timeout=TASK_EXECUTION_TIMEOUT,
        multiple_outputs=False,
        inlets=[FAKTUROWNIA_INVOICES, FAKTUROWNIA_CLIENTS],
        outlets=[CRM_DEALS, CRM_CLIENTS],
    )
    def sync_invoices_to_deals(triggering_asset_events=None) -> dict:
        webhooks.folded_events(triggering_asset_events)
        return tasks.sync_invoices_to_deals()

    check_setup() >> sync_invoices_to_deals()


fakturownia_invoices_to_deals()
