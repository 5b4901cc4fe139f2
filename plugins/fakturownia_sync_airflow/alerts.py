"""Alerts through an Airflow notifier (config key `alerts`): a task of any of the DAGs that fails for good, and
a run after which the quarantine or the client review list grew past its threshold (`alert_rules`).

Every DAG puts `CALLBACKS` in its `default_args`: `on_failure_callback` runs once a task has failed its last
try (a retry is not a failure yet), `on_success_callback` after each task, where `alert_rules.growth_alerts`
judges only the run that task itself finished, so one DAG run sends at most one growth alert.

E-mail by default: the SMTP provider's `SmtpNotifier`, through the SMTP connection (`smtp_default`, or the
one `[email] email_conn_id` names), from `[email] from_email` or the connection's `from_email` extra, to
`alerts.email_to`. The alert is plain text (a subject and a few lines), so any notifier that carries text
can be added in `notifiers` (README: Slack). An alert never carries a token: the error text is redacted
against every API and webhook token the connections hold.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseHook, Variable
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowNotFoundException

from fakturownia_sync.alert_rules import (
    REVIEW,
    RUNS_LOOKED_AT,
    WATCHED_STREAMS,
    Growth,
    alerts_alone,
    growth_alerts,
)
from fakturownia_sync.config import VARIABLE_NAME, Alerts, load_config
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.integration_findings import WEBHOOK_CONNECTION
from fakturownia_sync.redaction import redact
from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook, SyncStateHook
from fakturownia_sync_airflow.tasks import _owner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str


def alert_settings() -> Alerts | None:
    """`alerts` of the config Variable. A Variable that does not validate makes every run fail, and that must
    still reach someone: then `alerts` is read on its own (`alert_rules.alerts_alone`). None (logged) only when
    `alerts` itself cannot be read."""
    raw = Variable.get(VARIABLE_NAME, default=None)
    try:
        return load_config(raw).alerts
    except ConfigError as whole:
        try:
            settings = alerts_alone(raw)
        except ConfigError as exc:
            log.warning("No alert sent: %s", exc)
            return None
        log.warning("Alerting with the Variable's 'alerts' key alone; the rest does not validate: %s", whole)
        return settings


def notifiers(alert: Alert, settings: Alerts) -> list[Any]:
    """The notifiers an alert goes through: one e-mail to `alerts.email_to` (none when it is empty)."""
    if not settings.email_to:
        return []
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier  # only when an alert is due

    body = f'<pre style="font-family: monospace">{html.escape(alert.text)}</pre>'
    sender = conf.get("email", "from_email", fallback=None) or None  # else the connection's from_email
    return [SmtpNotifier(to=list(settings.email_to), from_email=sender, subject=alert.subject, html_content=body)]


def send(alert: Alert, settings: Alerts, context: Any) -> int:
    """Send `alert` through every notifier; returns how many took it. `notify` is called directly, not the
    notifier itself, so the text goes out as written and is never rendered as a Jinja template."""
    sent = 0
    for notifier in notifiers(alert, settings):
        notifier.notify(context)
        sent += 1
    log.info("Alert sent through %d notifier(s): %s", sent, alert.subject)
    return sent


def _secrets() -> tuple[str, ...]:
    """Every token the connections hold, to be cut out of an error text before it leaves Airflow."""
    found = []
    for conn_id in (FakturowniaHook.default_conn_name, SugesterHook.default_conn_name, WEBHOOK_CONNECTION):
        try:
            password = BaseHook.get_connection(conn_id).password
        except AirflowNotFoundException:
            continue
        if password:
            found += [password, password.split("/", 1)[0]]
    return tuple(found)


def failure_alert(context: Any) -> Alert:
    ti = context["ti"]
    task = ti.task_id if getattr(ti, "map_index", -1) in (-1, None) else f"{ti.task_id}[{ti.map_index}]"
    error = context.get("exception")
    message = redact(f"{type(error).__name__}: {error}", _secrets()) if error else "(no error recorded)"
    lines = [
        f"DAG {ti.dag_id} failed: task {task} ended in failure after try {ti.try_number}.",
        f"Run: {ti.run_id}",
        f"Error: {message}",
        f"Log: {ti.log_url}",
    ]
    return Alert(f"[Airflow] {ti.dag_id} failed: task {task}", "\n".join(lines))


def growth_alert(dag_id: str, run_id: str, due: list[Growth]) -> Alert:
    lists = {growth.kind for growth in due}
    what = (
        "client review list" if lists == {REVIEW} else "quarantine" if REVIEW not in lists else "quarantine and review"
    )
    lines = [growth.text() for growth in due]
    lines += [f"Run: {dag_id} {run_id}", "The entries are on the integration page (Browse → Fakturownia sync)."]
    return Alert(f"[Airflow] {dag_id}: {what} grew past the alert threshold", "\n".join(lines))


def on_task_failure(context: Any) -> None:
    """`on_failure_callback`: one e-mail per task that failed for good (`alerts.on_failure`)."""
    settings = alert_settings()
    if settings is None or not settings.on_failure or not settings.email_to:
        return
    send(failure_alert(context), settings, context)


def on_task_success(context: Any) -> None:
    """`on_success_callback`: an e-mail when the run this task finished grew a list past its threshold."""
    settings = alert_settings()
    if settings is None or not settings.email_to:
        return
    if settings.quarantine_growth is None and settings.review_growth is None:
        return
    ti = context["ti"]
    owner = _owner(context)
    store = SyncStateHook().get_conn()
    try:
        runs = {stream: store.runs_of(stream, RUNS_LOOKED_AT) for stream in WATCHED_STREAMS}
    finally:
        store.close()
    due = [
        g
        for stream, rows in runs.items()
        for g in growth_alerts(stream, rows, settings, owner=owner, finished_since=ti.start_date)
    ]
    if due:
        send(growth_alert(ti.dag_id, ti.run_id, due), settings, context)


CALLBACKS: dict[str, Any] = {"on_failure_callback": on_task_failure, "on_success_callback": on_task_success}
"""What every DAG adds to its `default_args`."""
