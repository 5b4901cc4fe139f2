"""Alerts: the growth rule (engine), and the callbacks every DAG carries delivering e-mail through the SMTP
provider's notifier to a real local SMTP server (aiosmtpd): a task that failed for good, and a run after which
the quarantine grew past its threshold, each give one e-mail with a clear subject and no secret. (The failure
alert of a real `airflow dags test` run is checked in test_integration_check.py.)"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fakturownia_sync.alert_rules import QUARANTINE, REVIEW, alerts_alone, growth_alerts, open_entries
from fakturownia_sync.config import Alerts, ConfigError, load_config
from fakturownia_sync.state import StateStore
from tests.alerts_harness import SENDER, smtp_connection_env, smtp_server, text_of

FAKTUROWNIA_TOKEN = "fkAlertTok3n-5d2e/acme"
SUGESTER_TOKEN = "sgAlertTok3n-9b1f"
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def run(owner: str, summary: dict[str, Any], finished_at: datetime = NOW) -> dict[str, Any]:
    return {"owner": owner, "summary": summary, "finished_at": finished_at}


# The rule ------------------------------------------------------------------------------------------------


def test_growth_is_measured_against_the_previous_dag_run_not_a_retry() -> None:
    alerts = Alerts(quarantine_growth=3, review_growth=2)
    earlier = NOW - timedelta(minutes=1)
    runs = [
        run("dag/run-2", {"quarantine_open": {"bad_nip": 4, "unmapped_department": 2}}),
        run("dag/run-2", {"quarantine_open": {"bad_nip": 5}}),  # the failed first try of the same DAG run
        run("dag/run-1", {"quarantine_open": {"bad_nip": 3}}),
    ]
    [growth] = growth_alerts("invoices_to_deals", runs, alerts, owner="dag/run-2", finished_since=earlier)
    assert (growth.kind, growth.before, growth.now, growth.grown) == (QUARANTINE, 3, 6, 3)
    assert growth.text().startswith("invoices_to_deals: open quarantine entries grew by 3 (3 → 6; alert at 3")
    assert "bad_nip 4, unmapped_department 2" in growth.text()
    stricter = Alerts(quarantine_growth=4)
    assert growth_alerts("invoices_to_deals", runs, stricter, owner="dag/run-2", finished_since=earlier) == []


def test_each_run_is_judged_once_by_the_task_that_finished_it() -> None:
    alerts = Alerts(review_growth=1)
    runs = [run("clients/run-7", {"review_total": 4, "review_by_reason": {"nip_conflict": 4}})]
    [first_run] = growth_alerts("clients_sync", runs, alerts, owner="clients/run-7", finished_since=NOW)
    assert (first_run.kind, first_run.before, first_run.now) == (REVIEW, 0, 4)  # a first run grows from zero
    later_task = NOW + timedelta(seconds=5)  # e.g. export_client_review, started after the sync finished
    assert growth_alerts("clients_sync", runs, alerts, owner="clients/run-7", finished_since=later_task) == []
    assert growth_alerts("clients_sync", runs, alerts, owner="clients/run-8", finished_since=NOW) == []
    assert growth_alerts("clients_sync", runs, Alerts(), owner="clients/run-7", finished_since=NOW) == []
    assert open_entries({"quarantine_open": {}, "review_total": 0}) == {QUARANTINE: 0, REVIEW: 0}
    assert open_entries({"deals_created": 3}) == {}


def test_alert_settings_are_bounded_with_clear_errors() -> None:
    assert load_config(None).alerts == Alerts()  # off by default: nobody to tell, no growth threshold
    assert load_config(None).alerts.on_failure is True
    for bad, named in (
        ({"email_to": "ops@firma.pl"}, "alerts.email_to"),
        ({"email_to": ["ops at firma"]}, "not an e-mail address"),
        ({"quarantine_growth": 0}, "alerts.quarantine_growth': must be at least 1"),
        ({"review_growth": 2_000_000}, "alerts.review_growth': must be at most 1000000"),
        ({"slack": True}, "unknown key 'alerts.slack'"),
    ):
        with pytest.raises(ConfigError, match=named):
            load_config({"alerts": bad})


# E-mail through the notifier --------------------------------------------------------------------------------


@pytest.fixture
def airflow_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The connections and the Variable a callback reads, from the environment as Airflow reads them."""
    state_db = tmp_path / "state.db"
    env = {
        **smtp_connection_env(),
        "AIRFLOW_CONN_FAKTUROWNIA_DEFAULT": json.dumps(
            {"conn_type": "http", "host": "acme", "password": FAKTUROWNIA_TOKEN}
        ),
        "AIRFLOW_CONN_SUGESTER_DEFAULT": json.dumps({"conn_type": "http", "host": "acme", "password": SUGESTER_TOKEN}),
        "AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB": json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{state_db}"}}
        ),
        "AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG": json.dumps(
            {
                "alerts": {
                    "email_to": ["ops@przyklad-handel.pl", "ksiegowosc@przyklad-handel.pl"],
                    "quarantine_growth": 3,
                }
            }
        ),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield state_db


def context(dag_id: str, task_id: str, run_id: str, started: datetime, error: BaseException | None = None) -> dict:
    """What Airflow hands a task callback: the DAG, the run id, the task instance and, on failure, the error."""
    from airflow.sdk import DAG

    log_url = f"http://airflow.example.pl/dags/{dag_id}/runs/{run_id}"
    ti = SimpleNamespace(
        dag_id=dag_id, task_id=task_id, run_id=run_id, try_number=3, map_index=-1, start_date=started, log_url=log_url
    )
    return {"dag": DAG(dag_id=dag_id, schedule=None), "run_id": run_id, "ti": ti, "exception": error}


def test_a_task_failed_for_good_sends_one_email_naming_it_without_the_token(airflow_side: Path) -> None:
    from fakturownia_sync_airflow.alerts import CALLBACKS

    error = RuntimeError(
        f"Sugester GET /app/deals.json?api_token={SUGESTER_TOKEN}&page=2 failed; the token was {FAKTUROWNIA_TOKEN}"
    )
    with smtp_server() as inbox:
        CALLBACKS["on_failure_callback"](
            context("crm_deals_to_invoices", "sync_deals_to_invoices", "manual__1", NOW, error)
        )
    [mail] = inbox
    assert mail["Subject"] == "[Airflow] crm_deals_to_invoices failed: task sync_deals_to_invoices"
    assert mail["From"] == SENDER and mail["To"] == "ops@przyklad-handel.pl, ksiegowosc@przyklad-handel.pl"
    body = html.unescape(text_of(mail))
    assert "task sync_deals_to_invoices ended in failure after try 3" in body and "Run: manual__1" in body
    assert "RuntimeError: Sugester GET /app/deals.json?api_token=***&page=2 failed; the token was ***" in body
    for secret in (FAKTUROWNIA_TOKEN, SUGESTER_TOKEN, FAKTUROWNIA_TOKEN.split("/")[0]):
        assert secret not in mail.as_string()


def test_quarantine_growth_past_the_threshold_sends_one_email_per_run(airflow_side: Path) -> None:
    from fakturownia_sync_airflow.alerts import CALLBACKS

    dag_id, stream = "fakturownia_invoices_to_deals", "invoices_to_deals"
    store = StateStore.open(f"sqlite:///{airflow_side}")
    try:
        before = store.start_run(stream, f"{dag_id}/scheduled__1")
        store.finish_run(before, "success", {"quarantine_open": {"unmapped_department": 2}})
        started = datetime.now(UTC)
        this = store.start_run(stream, f"{dag_id}/scheduled__2")
        store.finish_run(this, "success", {"quarantine_open": {"unmapped_department": 2, "invalid_date": 4}})
    finally:
        store.close()
    with smtp_server() as inbox:
        CALLBACKS["on_success_callback"](context(dag_id, "check_setup", "scheduled__3", started))  # not its run
        CALLBACKS["on_success_callback"](context(dag_id, "sync_invoices_to_deals", "scheduled__2", started))
        CALLBACKS["on_success_callback"](context(dag_id, "later_task", "scheduled__2", datetime.now(UTC)))
    [mail] = inbox  # only the task that finished the run judged it
    assert mail["Subject"] == "[Airflow] fakturownia_invoices_to_deals: quarantine grew past the alert threshold"
    body = text_of(mail)
    assert "invoices_to_deals: open quarantine entries grew by 4 (2 → 6; alert at 3 or more)" in body
    assert "invalid_date 4, unmapped_department 2" in body and "scheduled__2" in body
    assert FAKTUROWNIA_TOKEN not in mail.as_string() and SUGESTER_TOKEN not in mail.as_string()


def test_a_variable_that_does_not_validate_still_alerts_through_its_alerts_key(
    airflow_side: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken Variable fails every run: the failure must still reach the people `alerts` names."""
    from fakturownia_sync_airflow.alerts import CALLBACKS

    broken = {"department_map": "sales=1", "alerts": {"email_to": ["ops@przyklad-handel.pl"]}}
    monkeypatch.setenv("AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG", json.dumps(broken))
    error = RuntimeError("Variable 'fakturownia_sync_config' is invalid: key 'department_map': ...")
    with smtp_server() as inbox:
        CALLBACKS["on_failure_callback"](context("fakturownia_invoices_to_deals", "check_setup", "m2", NOW, error))
    [mail] = inbox
    assert mail["Subject"] == "[Airflow] fakturownia_invoices_to_deals failed: task check_setup"
    assert mail["To"] == "ops@przyklad-handel.pl"
    # `alerts` itself broken, or the Variable not JSON: nobody can be named, nothing is sent and nothing raises
    for raw in (json.dumps({"alerts": {"email_to": "ops@przyklad-handel.pl"}}), "{not json"):
        monkeypatch.setenv("AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG", raw)
        with smtp_server() as inbox:
            CALLBACKS["on_failure_callback"](context("fakturownia_invoices_to_deals", "check_setup", "m3", NOW, error))
        assert inbox == []


def test_the_alerts_key_alone_is_read_with_the_configs_own_errors() -> None:
    assert alerts_alone({"department_map": 5, "alerts": {"review_growth": 2}}) == Alerts(review_growth=2)
    assert alerts_alone(json.dumps({"invoice_kinds": "vat"})) == Alerts()
    assert alerts_alone(None) == Alerts() and alerts_alone("  ") == Alerts()
    with pytest.raises(ConfigError, match=r"alerts\.quarantine_growth': must be at least 1"):
        alerts_alone({"department_map": 5, "alerts": {"quarantine_growth": 0}})
    with pytest.raises(ConfigError, match="not valid JSON"):
        alerts_alone("{")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        alerts_alone("[1]")
