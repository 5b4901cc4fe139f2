"""Task bodies shared by the DAGs: read the config and connections, run the engine, report.

Failures that a retry cannot fix (a bad config, a rejected token, an account that cannot be reached) end
the task at once with one sentence that names the Variable key or the account, never the token.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from airflow.sdk import Variable, get_current_context
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

from fakturownia_sync.account_check import access_problem, expected_account_problem
from fakturownia_sync.clients_sync import ClientsSync
from fakturownia_sync.config import VARIABLE_NAME, NoDepartment, SyncConfig, load_config
from fakturownia_sync.errors import ApiAuthError, ConfigError
from fakturownia_sync.invoices_to_deals import InvoicesToDeals
from fakturownia_sync.review import review_export_path, write_review_csv
from fakturownia_sync.run_summary import render_summary
from fakturownia_sync.transport import RetryPolicy
from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook, SyncStateHook

log = logging.getLogger(__name__)

OWNER = "data-engineering"  # the DAGs' owner (default_args), shown in the UI's DAG list

# The set-up check gives an unreachable account about half a minute, not the sync's several minutes.
SETUP_CHECK_POLICY = RetryPolicy(max_attempts=4, backoff_initial=1.0, backoff_max=10.0, read_timeout=30.0)


def load_sync_config() -> SyncConfig:
    try:
        config = load_config(Variable.get(VARIABLE_NAME, default=None))
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    if not config.department_map and config.no_department != NoDepartment():
        log.warning(
            "Variable '%s': 'no_department' has no effect while 'department_map' is empty (departments are "
            "not synced); map at least one department to use it.",
            VARIABLE_NAME,
        )
    return config


def _check_account(hook: FakturowniaHook | SugesterHook, expected: str | None, key: str) -> str:
    try:
        client = hook.get_conn(policy=SETUP_CHECK_POLICY)
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    problem = expected_account_problem(client.account, expected, hook.conn_id, key) or access_problem(
        client, hook.conn_id
    )
    if problem:
        raise AirflowFailException(problem)
    return client.account.name


def check_setup() -> dict[str, Any]:
    """First task of every sync DAG: config valid, both accounts answer to their tokens (and are the accounts
    `expected_accounts` names), state DB migrated."""
    config = load_sync_config()
    expected = config.expected_accounts
    fakturownia = _check_account(FakturowniaHook(), expected.fakturownia, "expected_accounts.fakturownia")
    crm = _check_account(SugesterHook(), expected.sugester, "expected_accounts.sugester")
    SyncStateHook().get_conn().close()
    log.info("Configuration valid; Fakturownia account '%s', CRM account '%s'.", fakturownia, crm)
    return {
        "fakturownia_account": fakturownia,
        "crm_account": crm,
        "config_fingerprint": config.fingerprint(),
        "invoice_kinds": config.invoice_kinds,
    }


def _owner(context: Any = None) -> str:
    """Claims on records belong to the DAG run, so a retry of the same run takes over its own claims; runs in
    the state DB carry the same owner (how an alert finds the runs of its DAG run)."""
    context = context or get_current_context()
    return f"{context['dag'].dag_id}/{context['run_id']}"


def sync_invoices_to_deals() -> dict[str, Any]:
    config = load_sync_config()
    fakturownia = FakturowniaHook(requests_per_minute=config.requests_per_minute.fakturownia).get_conn()
    crm = SugesterHook(requests_per_minute=config.requests_per_minute.sugester).get_conn()
    store = SyncStateHook().get_conn()
    try:
        summary = InvoicesToDeals(fakturownia, crm, store, config, owner=_owner()).run()
    except ApiAuthError as exc:
        raise AirflowFailException(f"{exc.api} rejected the API token during the sync: {exc.message}") from None
    finally:
        store.close()
    log.info("Invoices → deals summary:\n%s", render_summary(summary))
    return summary


def sync_clients(*, full: bool = False) -> dict[str, Any]:
    """The two-way client sync (`include/clients_sync.py`); returns its run summary."""
    config = load_sync_config()
    fakturownia = FakturowniaHook(requests_per_minute=config.requests_per_minute.fakturownia).get_conn()
    crm = SugesterHook(requests_per_minute=config.requests_per_minute.sugester).get_conn()
    store = SyncStateHook().get_conn()
    try:
        summary = ClientsSync(fakturownia, crm, store, config, owner=_owner(), full=full).run()
    except ApiAuthError as exc:
        raise AirflowFailException(f"{exc.api} rejected the API token during the sync: {exc.message}") from None
    finally:
        store.close()
    log.info("Client sync summary:\n%s", render_summary(summary))
    return summary


REVIEW_FOLDER_OPTION = ("fakturownia_sync", "review_export_folder")  # AIRFLOW__FAKTUROWNIA_SYNC__REVIEW_EXPORT_FOLDER


def review_export_root() -> Path:
    """The only folder review exports may go to: `[fakturownia_sync] review_export_folder` of the Airflow
    config if set, else `$AIRFLOW_HOME` (Airflow's own default, `~/airflow`, when the variable is unset)."""
    configured = conf.get(*REVIEW_FOLDER_OPTION, fallback=None)
    return Path(configured or os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def review_csv_path(path: str | None = None) -> Path:
    """Where the review list goes: the given file (or folder) under the export root, else
    `<root>/fakturownia_sync_review/client_review.csv`; a path outside the root fails the task."""
    try:
        return review_export_path(path, review_export_root())
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None


def export_client_review(path: str | None = None) -> dict[str, Any]:
    """Write the open client review list as CSV; returns the file, the entry count and the count by reason."""
    target = review_csv_path(path)
    store = SyncStateHook().get_conn()
    try:
        rows = store.open_client_review()
    finally:
        store.close()
    try:
        count = write_review_csv(rows, target, root=review_export_root())
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    by_reason = dict(sorted(Counter(row["reason"] for row in rows).items()))
    log.info("Client review list: %d open entries written to %s (%s)", count, target, by_reason or "none")
    return {"path": str(target), "entries": count, "by_reason": by_reason}
