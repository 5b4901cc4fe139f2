"""
### CRM deals → Fakturownia invoices ("Dodaj fakturę")

Every 15 minutes (and by hand), each CRM deal whose status is one of `deal_invoicing.statuses` and that has
no invoice yet gets exactly one Fakturownia invoice, prefilled from the deal, and is linked back.

**Off by default.** Nothing is invoiced until `deal_invoicing.enabled` is `true` in the Variable
`fakturownia_sync_config`; until then each run says so in its first log line and its summary.

**Tasks**
1. `check_setup` validates the Variable, checks both accounts (connections `fakturownia_default`,
   `sugester_default`) and the state DB (`fakturownia_sync_db`), and resolves `deal_invoicing.statuses` and
   `invoiced_status` against the CRM's deal statuses: a status the CRM does not have fails here, by name.
2. `sync_deals_to_invoices` reads the CRM's deals and invoices the marked ones: kind `invoice_kind`, issue date
   today, `payment_days`, one position (the deal's name, quantity 1, its price as `price` gross or net at
   `tax`, its currency), the buyer linked, matched or created by the client rules, the seller department
   through `department_map`. Its return value (XCom) and log hold the run summary.

**Exactly once, no loop.** The invoice carries `oid` = the deal id with `oid_unique=yes`; a lost answer or a
killed worker is settled by looking the invoice up by `oid` before anything is sent again. The invoice is
linked to its deal in the state DB, so `fakturownia_invoices_to_deals` updates that deal and never makes a
second one; a deal made from an invoice is never invoiced. The deal gets the invoice's link,
`external_ids.fakturownia_invoice_id`, and moves to `invoiced_status` when one is set.

**Nothing lost.** A deal with no client, no or a negative price, an unknown currency, or one Fakturownia
refuses is quarantined (stream `deals_to_invoices`) with its reason; the run carries on and a later run
retries it once the deal is fixed. See the README, "Deals to invoices".
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from fakturownia_sync.timing import SETUP_CHECK_TIMEOUT, TASK_EXECUTION_TIMEOUT
from fakturownia_sync_airflow import deal_invoicing_tasks
from fakturownia_sync_airflow.alerts import CALLBACKS
from fakturownia_sync_airflow.assets import CRM_CLIENTS, CRM_DEALS, FAKTUROWNIA_WRITES, record_fakturownia_writes
from fakturownia_sync_airflow.tasks import OWNER


@dag(
    dag_id="crm_deals_to_invoices",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="CRM deals in the chosen statuses become Fakturownia invoices, each exactly once (off by default).",
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
def crm_deals_to_invoices() -> None:
    # check_setup holds the pool of the run's main task: it calls both APIs, and never waits for another pool.
    @task(pool="fakturownia_api", retries=0, execution_timeout=SETUP_CHECK_TIMEOUT, multiple_outputs=False)
    def check_setup() -> dict:
        return deal_invoicing_tasks.check_setup()

    # Invoices and client cards made in Fakturownia are recorded only when there were some (FAKTUROWNIA_WRITES):
    # the syncs scheduled on those assets start only when this run gave them something to do.
    @task(
        pool="fakturownia_api",
        execution_timeout=TASK_EXECUTION_TIMEOUT,
        multiple_outputs=False,
        inlets=[CRM_DEALS, CRM_CLIENTS],
        outlets=[CRM_DEALS, FAKTUROWNIA_WRITES],
    )
    def sync_deals_to_invoices(outlet_events=None) -> dict:
        summary = deal_invoicing_tasks.sync_deals_to_invoices()
        record_fakturownia_writes(outlet_events, summary)
        return summary

    check_setup() >> sync_deals_to_invoices()


crm_deals_to_invoices()
