"""Task bodies of `fakturownia_integration_check`: read each side under its own API pool, then one report.

The rules live in the engine (`fakturownia_sync.integration_check`); here are only what Airflow adds: the
connections, the Params, the state DB and the task that fails when the report names a problem. An API that
answers badly is a finding in the report, not a task failure, so the report always lands in the state DB.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from airflow.sdk.log import mask_secret

from fakturownia_sync.config import SyncConfig, valid_webhook_url
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.integration_check import (
    build_report,
    gather_crm,
    gather_fakturownia,
    not_connected,
    render_report,
    unusable_config_report,
)
from fakturownia_sync.integration_findings import WEBHOOK_CONNECTION
from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook, SyncStateHook
from fakturownia_sync_airflow.tasks import SETUP_CHECK_POLICY, load_sync_config

log = logging.getLogger(__name__)


def webhook_url(params: dict[str, Any] | None, config: SyncConfig) -> str | None:
    """The receiver's URL: the Param `webhook_url` if given, else the config key `webhook_url`."""
    given = (params or {}).get("webhook_url")
    if not given:
        return config.webhook_url
    try:
        return valid_webhook_url(str(given))
    except ValueError as exc:
        raise AirflowFailException(f"Param 'webhook_url' {exc}") from None


def webhook_token() -> str | None:
    """The webhook's own token (password of connection `fakturownia_webhook`), masked in logs; None if unset."""
    try:
        connection = BaseHook.get_connection(WEBHOOK_CONNECTION)
    except AirflowNotFoundException:
        return None
    if connection.password:
        mask_secret(connection.password)
    return connection.password or None


def _connect(hook: FakturowniaHook | SugesterHook) -> tuple[Any, dict[str, Any] | None]:
    """The hook's client with the set-up check's short retries, or no client and the side's facts saying
    which connection to fix."""
    try:
        return hook.get_conn(policy=SETUP_CHECK_POLICY), None
    except AirflowNotFoundException:
        problem = f"Connection '{hook.conn_id}' does not exist: create it (password: API token, host: account)."
    except ConfigError as exc:
        problem = str(exc)
    return None, not_connected(hook.api, problem)


def check_fakturownia(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Fakturownia side's facts; registers the missing webhooks when the Param `register_webhooks` is on."""
    config = load_sync_config()
    hook = FakturowniaHook()
    client, unusable = _connect(hook)
    if unusable:
        return unusable
    register = bool((params or {}).get("register_webhooks"))
    facts = gather_fakturownia(
        client,
        config,
        conn_id=hook.conn_id,
        webhook_url=webhook_url(params, config),
        webhook_token=webhook_token(),
        register_webhooks=register,
    )
    for created in (facts.get("webhooks") or {}).get("created", []):
        log.info("Registered the Fakturownia webhook %s → %s (id %s).", created["kind"], created["url"], created["id"])
    return facts


def check_crm() -> dict[str, Any]:
    """The CRM side's facts: account, departments, user pairing, deals made by the CRM's own integration."""
    config = load_sync_config()
    hook = SugesterHook()
    client, unusable = _connect(hook)
    if unusable:
        return unusable
    try:
        fakturownia_base_url = FakturowniaHook().account().base_url
    except (AirflowNotFoundException, ConfigError):
        fakturownia_base_url = None  # any *.fakturownia.pl invoice link still counts
    return gather_crm(client, config, conn_id=hook.conn_id, fakturownia_base_url=fakturownia_base_url)


def report(
    fakturownia: dict[str, Any] | None, crm: dict[str, Any] | None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build the report (a side whose task failed is reported as not checked), store it for the UI page,
    log it, and return it (one XCom). A config Variable or Param that does not validate is the report's
    problem: both sides' tasks failed on it, and the page must not go on showing an older, sound check."""
    try:
        config = load_sync_config()
        result = build_report(fakturownia, crm, config, webhook_url=webhook_url(params, config))
    except AirflowFailException as exc:
        result = unusable_config_report(str(exc))
    store = SyncStateHook().get_conn()
    try:
        check_id = store.save_integration_check(result["ok"], result)
    finally:
        store.close()
    log.info("%s\n(stored as integration check %d)", render_report(result), check_id)
    return result


def verdict(result: dict[str, Any] | None) -> None:
    """Fail, listing every problem, when the report names any; the run's state is then the check's answer."""
    if result is None:
        raise AirflowFailException("The integration check made no report: see the log of task 'report'.")
    problems = result.get("problems") or []
    if problems:
        listed = " ".join(f"({n}) {text}" for n, text in enumerate(problems, 1))
        raise AirflowFailException(f"The integration check found {len(problems)} problem(s): {listed}")
    log.info("The integration check found no problem.")
