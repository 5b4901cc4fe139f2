"""
### Integration check: is the set-up sound?

Every morning (and whenever triggered by hand), a health report of the whole integration, stored in the
state DB and shown on the integration page (Browse → Fakturownia sync). The run fails when the report names
a problem, so a failed run here means "something in the set-up needs a person", and says what.

**What it checks**
- **Accounts**: both connections (`fakturownia_default`, `sugester_default`) answer to their tokens, and name
  the accounts config key `expected_accounts` expects (when set).
- **Departments**: both systems' departments by name, each `department_map` pair against them, every
  department in no pair (its records would be held as `unmapped_department`).
- **Users**: the pairing (identical login AND e-mail, e-mail case-folded) of `fakturownia_users` with the
  CRM's users; each unpaired Fakturownia user with what differs.
- **The CRM's built-in Fakturownia integration**: CRM deals that link to Fakturownia invoices but carry no
  `external_ids.fakturownia_invoice_id` were made by the vendor's own integration, which then gives every
  invoice a second deal: switch it off.
- **Fakturownia webhooks** (`invoice:create|update`, `client:create|update`): registered to `webhook_url`
  with the token of connection `fakturownia_webhook`, or not; "unknown" when the API answers 403/404.
- **By hand** (no API shows it): a checklist of the Multipass login settings, with their place in each system.

**Tasks**: `check_fakturownia` (pool `fakturownia_api`) and `check_crm` (pool `sugester_api`) read each side;
`report` builds the report, stores it, logs it and returns it (one XCom); `verdict` fails listing the problems.

**Params.** `register_webhooks` (default off) registers the missing webhooks to `webhook_url` (the Param, else
the config key) with the token of connection `fakturownia_webhook`; the token is never logged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from fakturownia_sync.timing import SETUP_CHECK_TIMEOUT, TASK_EXECUTION_TIMEOUT
from fakturownia_sync_airflow import check_tasks
from fakturownia_sync_airflow.alerts import CALLBACKS
from fakturownia_sync_airflow.tasks import OWNER


@dag(
    dag_id="fakturownia_integration_check",
    schedule="0 5 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description="Daily health report: tokens and accounts, departments, user pairing, the CRM's own "
    "integration, webhooks, and the Multipass checklist; fails when something needs a person.",
    doc_md=__doc__,
    tags=["fakturownia", "crm", "health"],
    default_args={
        "owner": OWNER,
        "retries": 0,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": SETUP_CHECK_TIMEOUT,
        **CALLBACKS,
    },
    params={
        "register_webhooks": Param(
            False,
            type="boolean",
            title="Register missing webhooks",
            description="Register the missing Fakturownia webhooks (invoice:create, invoice:update, client:create, "
            "client:update) to the webhook URL, with the token of connection 'fakturownia_webhook'.",
        ),
        "webhook_url": Param(
            None,
            type=["null", "string"],
            title="Webhook URL (optional)",
            description="Where Fakturownia sends its webhooks: <Airflow URL>/fakturownia-sync/webhooks/fakturownia "
            "as Fakturownia's servers reach it. Empty: config key 'webhook_url'.",
        ),
    },
)
def fakturownia_integration_check() -> None:
    @task(pool="fakturownia_api", multiple_outputs=False)
    def check_fakturownia(params: dict[str, Any] | None = None) -> dict:
        return check_tasks.check_fakturownia(params)

    # Every CRM deal is read once: a large CRM takes longer than the other checks.
    @task(pool="sugester_api", execution_timeout=TASK_EXECUTION_TIMEOUT, multiple_outputs=False)
    def check_crm() -> dict:
        return check_tasks.check_crm()

    @task(trigger_rule="all_done", multiple_outputs=False)  # the state DB only: no API, no pool
    def report(fakturownia: dict | None, crm: dict | None, params: dict[str, Any] | None = None) -> dict:
        return check_tasks.report(fakturownia, crm, params)

    @task
    def verdict(result: dict | None) -> None:
        check_tasks.verdict(result)

    verdict(report(check_fakturownia(), check_crm()))


fakturownia_integration_check()
