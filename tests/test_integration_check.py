"""`fakturownia_integration_check` against the sandbox over real sockets: each finding of the report (accounts,
departments, users, the CRM's own integration, webhooks), and once under real Airflow: the report lands in
the state DB, the run fails naming the problem, and the failure alert goes out by e-mail."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fakturownia_sync.config import SyncConfig, load_config
from fakturownia_sync.connections import ApiEndpoint, SyncEndpoints, connect_apis, connect_fakturownia
from fakturownia_sync.integration_check import build_report, gather_crm, gather_fakturownia, render_report
from fakturownia_sync.integration_findings import WEBHOOK_KINDS
from fakturownia_sync.state import StateStore
from fakturownia_sync.transport import RetryPolicy
from sandbox.demo_config import DEMO_CONFIG
from sandbox.process import SandboxProcess
from sandbox.seed import CRM_USERS
from tests.airflow_harness import FAKTUROWNIA_TOKEN, SUGESTER_TOKEN, connections_env, dags_test
from tests.alerts_harness import SMTP_PORT, smtp_connection_env, smtp_server, text_of

RECEIVER = "https://airflow.example.pl/fakturownia-sync/webhooks/fakturownia"
WEBHOOK_TOKEN = "whTok3n-integration-check-7c1d"
FAST = RetryPolicy(max_attempts=2, backoff_initial=0.01, backoff_max=0.05, read_timeout=10.0)
# Every seeded CRM user, listed as Fakturownia users with the same login and e-mail (the e-mail in other case).
PAIRED_USERS = [
    {"id": 500 + n, "login": login, "email": f"{login}@Przyklad-Handel.pl"} for n, (login, _) in enumerate(CRM_USERS)
]


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    tokens = {"fakturownia_token": FAKTUROWNIA_TOKEN, "sugester_token": SUGESTER_TOKEN}
    with SandboxProcess(
        seed=5, clients=20, invoices=30, crm_clients=10, fakturownia_port=19510, sugester_port=19511, **tokens
    ) as running:
        yield running


def config(**overrides: Any) -> SyncConfig:
    return load_config({**DEMO_CONFIG, "fakturownia_users": PAIRED_USERS, "webhook_url": RECEIVER, **overrides})


def check(sandbox: SandboxProcess, settings: SyncConfig, *, register: bool = False, token: str | None = WEBHOOK_TOKEN):
    fakturownia, crm = connect_apis(SyncEndpoints.of(sandbox), policy=FAST)
    fakturownia_facts = gather_fakturownia(
        fakturownia, settings, webhook_url=settings.webhook_url, webhook_token=token, register_webhooks=register
    )
    crm_facts = gather_crm(crm, settings, fakturownia_base_url=fakturownia.account.base_url)
    report = build_report(fakturownia_facts, crm_facts, settings, webhook_url=settings.webhook_url)
    text = json.dumps(report, ensure_ascii=False)  # JSON, as the state DB and the XCom store it
    for secret in (FAKTUROWNIA_TOKEN, SUGESTER_TOKEN, WEBHOOK_TOKEN):
        assert secret not in text and secret not in render_report(report)
    return report


def section(report: dict[str, Any], title: str) -> dict[str, Any]:
    return next(s for s in report["sections"] if title in s["title"])


def texts(report: dict[str, Any], title: str, ok: bool | None) -> list[str]:
    return [entry["text"] for entry in section(report, title)["items"] if entry["ok"] is ok]


def test_a_sound_set_up_passes_and_registering_webhooks_twice_adds_none(sandbox: SandboxProcess) -> None:
    before = check(sandbox, config())
    assert not before["ok"]
    assert len(texts(before, "webhooks", False)) == len(WEBHOOK_KINDS)  # none registered yet

    registered = check(sandbox, config(), register=True)
    assert registered["ok"], registered["problems"]
    assert all(s["ok"] is True for s in registered["sections"]), [s["title"] for s in registered["sections"]]
    assert set(texts(registered, "webhooks", True)) == {
        f"{kind}: registered by this run → {RECEIVER}." for kind in WEBHOOK_KINDS
    }
    again = check(sandbox, config(), register=True)
    assert again["ok"] and not any("by this run" in t for t in texts(again, "webhooks", True))
    listed = connect_apis(SyncEndpoints.of(sandbox), policy=FAST)[0].list_webhooks()
    assert sorted(w["kind"] for w in listed) == sorted(WEBHOOK_KINDS)  # one each, none twice
    assert {w["url"] for w in listed} == {RECEIVER} and {w["api_token"] for w in listed} == {WEBHOOK_TOKEN}
    assert (
        len(texts(again, "Users", True)) == 1 and f"{len(CRM_USERS)} user(s) paired" in texts(again, "Users", True)[0]
    )
    assert len(again["checklist"]) >= 3 and all(c["fakturownia"] and c["crm"] for c in again["checklist"])
    assert any("Multipass" in c["text"] for c in again["checklist"])


def test_a_wrong_token_or_another_account_is_a_problem_naming_the_account(sandbox: SandboxProcess) -> None:
    wrong = connect_fakturownia(ApiEndpoint(token="not-the-token", host=sandbox.fakturownia_url), policy=FAST)
    facts = gather_fakturownia(wrong, config())
    report = build_report(facts, None, config(), webhook_url=RECEIVER)
    [problem, crm_not_checked] = texts(report, "Accounts", False)
    assert problem.startswith("Fakturownia rejected the API token for account '127.0.0.1:19510'")
    assert "connection 'fakturownia_default'" in problem and "not-the-token" not in json.dumps(report)
    assert "CRM side was not checked" in crm_not_checked
    assert section(report, "webhooks")["ok"] is None and section(report, "Departments")["ok"] is None

    elsewhere = check(sandbox, config(expected_accounts={"sugester": "acme"}))
    [other] = texts(elsewhere, "Accounts", False)
    assert "reaches Sugester account '127.0.0.1:19511'" in other and "expects account 'acme'" in other


def test_deals_made_by_the_crms_own_integration_are_found(sandbox: SandboxProcess) -> None:
    fakturownia, crm = connect_apis(SyncEndpoints.of(sandbox), policy=FAST)
    invoice = fakturownia.get_invoice(3)
    link = f"{sandbox.fakturownia_url}/invoices/3"
    ours = crm.create_deal({"name": "ours", "url": link, "external_ids": {"fakturownia_invoice_id": "3"}})
    crm.create_deal({"name": "a plain deal", "url": "https://sklep.example.pl/zamowienie/3"})
    assert check(sandbox, config())["sections"][3]["ok"] is True  # ours and a shop's link are not foreign

    theirs = crm.create_deal({"name": "Faktura (integracja CRM)", "url": f"{sandbox.fakturownia_url}/invoices/3"})
    public = crm.create_deal({"name": "Faktura 2", "url": invoice["view_url"]})
    report = check(sandbox, config())
    [problem] = texts(report, "built-in", False)
    assert problem.startswith("2 of 4 CRM deals link to Fakturownia invoices this sync did not make")
    found = section(report, "built-in")["items"][0]["details"]
    assert {deal["id"] for deal in found} == {theirs["id"], public["id"]} and ours["id"] not in {d["id"] for d in found}
    assert problem in report["problems"] and not report["ok"]


def test_unpaired_users_are_listed_with_what_differs(sandbox: SandboxProcess) -> None:
    users = [
        {"id": 501, "login": "anna.kowalczyk", "email": "anna.kowalczyk@przyklad-handel.pl"},  # paired
        {"id": 502, "login": "piotr.w", "email": "piotr.wisniewski@przyklad-handel.pl"},  # same e-mail, other login
        {"id": 503, "login": "katarzyna.zielinska", "email": "kasia@gmail.com"},  # same login, other e-mail
        {"id": 504, "login": "jan.nowak", "email": "jan.nowak@przyklad-handel.pl"},  # nobody like him
    ]
    report = check(sandbox, config(fakturownia_users=users))
    problems = texts(report, "Users", False)
    assert any("'piotr.w' and CRM user 'piotr.wisniewski' share the e-mail" in p for p in problems)
    assert any("'katarzyna.zielinska' and CRM user 3 share the login but not the e-mail" in p for p in problems)
    assert any("kasia@gmail.com / katarzyna.zielinska@przyklad-handel.pl" in p for p in problems)
    assert any(p.startswith("Fakturownia user 'jan.nowak'") for p in problems) and len(problems) == 3
    assert texts(report, "Users", True) == ["1 user(s) paired (same login and e-mail): anna.kowalczyk ↔ CRM user 1."]
    assert texts(report, "Users", None) == [
        "CRM users with no Fakturownia user in fakturownia_users: michal.lewandowski."
    ]

    nobody = check(sandbox, config(fakturownia_users=[]))
    assert section(nobody, "Users")["ok"] is None and "lists nobody" in texts(nobody, "Users", None)[0]


def test_unmapped_departments_and_stale_pairs_are_named(sandbox: SandboxProcess) -> None:
    pairs = [
        {"fakturownia_department_id": 11, "crm_department_id": 1},
        {"fakturownia_department_id": 99, "crm_department_id": 2},
    ]
    partial = config(department_map=pairs)
    problems = texts(check(sandbox, partial), "Departments", False)
    assert "department_map pair 99 ↔ 2: Fakturownia has no department 99; fix the pair." in problems
    assert any(
        p.startswith("Fakturownia department 'Oddział Kraków' (12) is in no department_map pair") for p in problems
    )
    assert any(p.startswith("Fakturownia department 'Oddział Gdańsk' (13)") for p in problems)
    assert any(p.startswith("CRM department 'Oddział Gdańsk' (3)") for p in problems) and len(problems) == 4

    off = check(sandbox, config(department_map=[]))
    [note] = texts(off, "Departments", None)
    assert note.startswith("department_map is empty: departments are not synced (Fakturownia: 'Centrala Warszawa'")
    rows = section(off, "Departments")["items"][0]["details"]
    assert {d["name"] for d in rows["crm"]} == {"Centrala Warszawa", "Oddział Kraków", "Oddział Gdańsk"}


def test_webhooks_missing_with_another_token_or_without_an_api(sandbox: SandboxProcess) -> None:
    fakturownia = connect_apis(SyncEndpoints.of(sandbox), policy=FAST)[0]
    fakturownia.create_webhook("invoice:create", RECEIVER, "an-old-token")
    fakturownia.create_webhook("client:create", "https://old.example.pl/hook", WEBHOOK_TOKEN)
    problems = texts(check(sandbox, config()), "webhooks", False)
    assert "invoice:create: the webhook's token is not the password of connection 'fakturownia_webhook'" in problems[0]
    assert any(
        p.startswith("client:create: no active webhook to " + RECEIVER + " (active ones go to https://old")
        for p in problems
    )
    assert sum("no active webhook" in p for p in problems) == 3 and "an-old-token" not in json.dumps(problems)

    unset = check(sandbox, config(webhook_url=None))  # no receiver set: the kinds are listed, never a problem
    assert section(unset, "webhooks")["ok"] is None
    assert "invoice:create: no active webhook to this receiver known (active ones go to " + RECEIVER in json.dumps(
        texts(unset, "webhooks", None), ensure_ascii=False
    )

    for status in (404, 403):
        answer = requests.post(f"{sandbox.fakturownia_url}/_sandbox/webhooks_api", json={"status": status}, timeout=10)
        answer.raise_for_status()
        unknown = check(sandbox, config())
        assert section(unknown, "webhooks")["ok"] is None, status
        assert (
            f"Webhooks unknown: Fakturownia answered HTTP {status} to GET /webhooks.json"
            in texts(unknown, "webhooks", None)[0]
        )
    refused = check(sandbox, config(), register=True)
    assert texts(refused, "webhooks", False) == [
        "register_webhooks is on, but Fakturownia answered HTTP 403 to GET /webhooks.json: nothing was registered."
    ]
    requests.post(f"{sandbox.fakturownia_url}/_sandbox/webhooks_api", json={"status": None}, timeout=10)
    no_url = check(sandbox, config(webhook_url=None), register=True)
    assert any(
        t.startswith("register_webhooks is on, but no webhook URL is set") for t in texts(no_url, "webhooks", False)
    )
    no_token = check(sandbox, config(), register=True, token=None)
    assert any("connection 'fakturownia_webhook' has no token" in t for t in texts(no_token, "webhooks", False))


def latest_check(state_db: Path) -> dict[str, Any] | None:
    store = StateStore.open(f"sqlite:///{state_db}")
    try:
        return store.latest_integration_check()
    finally:
        store.close()


def test_the_dag_stores_its_report_fails_naming_the_problem_and_alerts(airflow_env, sandbox, tmp_path: Path) -> None:
    crm = connect_apis(SyncEndpoints.of(sandbox), policy=FAST)[1]
    foreign = crm.create_deal({"name": "Faktura z integracji CRM", "url": f"{sandbox.fakturownia_url}/invoices/5"})
    state_db = tmp_path / "state.db"
    env = {**airflow_env, **connections_env(sandbox, state_db), **smtp_connection_env()}
    settings = {**DEMO_CONFIG, "fakturownia_users": PAIRED_USERS, "alerts": {"email_to": ["ops@przyklad-handel.pl"]}}
    env["AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG"] = json.dumps(settings)
    env["AIRFLOW_CONN_FAKTUROWNIA_WEBHOOK"] = json.dumps({"conn_type": "generic", "password": WEBHOOK_TOKEN})
    with smtp_server(SMTP_PORT) as inbox:
        result = dags_test(
            env, "fakturownia_integration_check", conf={"register_webhooks": True, "webhook_url": RECEIVER}
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "The integration check found 1 problem(s): (1) 1 of 1 CRM deals link to Fakturownia invoices" in output
    for secret in (FAKTUROWNIA_TOKEN, SUGESTER_TOKEN, WEBHOOK_TOKEN):
        assert secret not in output
    latest = latest_check(state_db)
    assert latest is not None and latest["ok"] is False
    [vendor] = [s for s in latest["report"]["sections"] if "built-in" in s["title"]]
    assert vendor["ok"] is False and vendor["items"][0]["details"][0]["id"] == foreign["id"]
    [webhooks] = [s for s in latest["report"]["sections"] if "webhooks" in s["title"]]
    assert webhooks["ok"] is True  # registered by this run with the connection's token
    [mail] = inbox  # one failed task, one e-mail
    assert mail["Subject"] == "[Airflow] fakturownia_integration_check failed: task verdict"
    assert mail["To"] == "ops@przyklad-handel.pl"
    body = text_of(mail)
    assert "1 of 1 CRM deals link to Fakturownia invoices" in html.unescape(body)
    for secret in (FAKTUROWNIA_TOKEN, SUGESTER_TOKEN, WEBHOOK_TOKEN):
        assert secret not in mail.as_string() and secret not in body


def test_a_config_that_does_not_validate_is_the_report_stored_in_place_of_an_older_one(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """Both sides' tasks fail on a config Variable that does not validate; the report still lands, naming the key,
    so the page does not go on showing yesterday's sound check. No API is called: the connections lead nowhere."""
    state_db = tmp_path / "state.db"
    store = StateStore.open(f"sqlite:///{state_db}")
    try:
        store.save_integration_check(True, {"ok": True, "sections": [], "checklist": [], "problems": []})
    finally:
        store.close()
    nowhere = json.dumps({"conn_type": "http", "host": "http://127.0.0.1:19999", "password": "unused-token"})
    env = {
        **airflow_env,
        "AIRFLOW_CONN_FAKTUROWNIA_DEFAULT": nowhere,
        "AIRFLOW_CONN_SUGESTER_DEFAULT": nowhere,
        "AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB": json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{state_db}"}}
        ),
        "AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG": json.dumps({**DEMO_CONFIG, "alerts": {"review_growth": 0}}),
    }
    result = dags_test(env, "fakturownia_integration_check")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "The integration check found 1 problem(s): (1) Variable 'fakturownia_sync_config' is invalid" in output
    latest = latest_check(state_db)
    assert latest is not None and latest["ok"] is False
    [problem] = latest["report"]["problems"]
    assert "key 'alerts.review_growth': must be at least 1" in problem
    assert [s["title"] for s in latest["report"]["sections"]] == ["Configuration"]
    assert latest["report"]["checklist"]  # what no API shows still stands
