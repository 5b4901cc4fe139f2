"""Task bodies of `crm_deals_to_invoices`: the set-up check (with the deal statuses) and the run.

The statuses of `deal_invoicing` are resolved against the CRM in the first task, so a status name the CRM does
not have fails the run before anything is read, in one sentence naming it.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException

from fakturownia_sync.deal_statuses import resolve_statuses
from fakturownia_sync.deals_to_invoices import DealsToInvoices
from fakturownia_sync.errors import ApiAuthError, ConfigError
from fakturownia_sync.run_summary import render_summary
from fakturownia_sync_airflow import tasks
from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook, SyncStateHook

log = logging.getLogger(__name__)


def check_setup() -> dict[str, Any]:
    """The shared set-up check, then the deal statuses of `deal_invoicing` resolved against the CRM."""
    result = tasks.check_setup()
    config = tasks.load_sync_config()
    settings = config.deal_invoicing
    if not settings.enabled:
        log.info("Deal invoicing is off (deal_invoicing.enabled is false): the run will invoice nothing.")
        return {**result, "deal_invoicing": "disabled"}
    crm = SugesterHook().get_conn(policy=tasks.SETUP_CHECK_POLICY)
    try:
        wanted, invoiced = resolve_statuses(crm, config)
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    log.info("Deals in status %s are invoiced (status ids %s).", sorted(wanted.values()), sorted(wanted))
    return {**result, "deal_invoicing": "enabled", "status_ids": sorted(wanted), "invoiced_status_id": invoiced}


def sync_deals_to_invoices() -> dict[str, Any]:
    config = tasks.load_sync_config()
    fakturownia = FakturowniaHook(requests_per_minute=config.requests_per_minute.fakturownia).get_conn()
    crm = SugesterHook(requests_per_minute=config.requests_per_minute.sugester).get_conn()
    store = SyncStateHook().get_conn()
    context = get_current_context()
    owner = f"{context['dag'].dag_id}/{context['run_id']}"  # a retry of the run takes over its own claims
    try:
        summary = DealsToInvoices(fakturownia, crm, store, config, owner=owner).run()
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    except ApiAuthError as exc:
        raise AirflowFailException(f"{exc.api} rejected the API token during the run: {exc.message}") from None
    finally:
        store.close()
    log.info("Deals → invoices summary:\n%s", render_summary(summary))
    return summary
