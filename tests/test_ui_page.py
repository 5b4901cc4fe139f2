"""The integration page in a real api-server: who may see it and act on it, what it shows from a seeded state,
and what its actions store. Plain HTTP (requests); the browser tests are in test_ui_browser.py."""

from __future__ import annotations

import csv
import io
import re
import subprocess
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from fakturownia_sync.state import StateStore
from tests.airflow_harness import AIRFLOW, ROOT
from tests.ui_harness import ADMIN, PAGE_PATH, VIEWER, UiServer, decisions_by, ui_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, airflow_template: Path) -> Iterator[UiServer]:
    with ui_server(tmp_path_factory.mktemp("ui_page"), airflow_template) as running:
        yield running


def text_of(html: str) -> str:
    """The page's visible text, whitespace folded, for assertions about what a person reads."""
    without_tags = re.sub(r"<style.*?</style>|<[^>]+>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(without_tags))


def test_anonymous_and_forged_requests_are_refused(server: UiServer) -> None:
    for method, path in (("GET", ""), ("GET", "review.csv"), ("POST", "review-decision"), ("POST", "quarantine-retry")):
        response = requests.request(method, server.page_url + path, data={"subject": "x"}, timeout=30)
        assert response.status_code == 401, (method, path, response.status_code)
    forged = requests.get(server.page_url, cookies={"_token": "not-a-jwt"}, timeout=30)
    assert forged.status_code in (401, 403)
    assert "Quarantine" not in forged.text


def test_the_webhook_route_is_not_behind_the_airflow_login(server: UiServer) -> None:
    """Fakturownia has no Airflow login: its webhook must reach the receiver, which checks its own token."""
    response = requests.post(f"{server.url}/fakturownia-sync/webhooks/fakturownia", json={}, timeout=30)
    assert response.status_code not in (401, 404), response.status_code


def test_page_shows_the_seeded_quarantine_review_runs_departments_and_users(server: UiServer) -> None:
    store = server.store()
    try:
        quarantined = store.open_quarantine_page()
        review = store.open_client_review()
    finally:
        store.close()
    assert quarantined and review  # the seed must give the page something to show
    response = server.session(ADMIN).get(server.page_url, timeout=60)
    assert response.status_code == 200, server.log_tail()
    html, text = response.text, text_of(response.text)
    assert f"Signed in as {ADMIN}" in text
    for entry in quarantined:
        assert f'data-stream="{entry["stream"]}" data-record="{entry["record_id"]}"' in html
        assert entry["message"] in text
    assert {entry["reason"] for entry in quarantined} <= set(re.findall(r'<h3 id="reason-([a-z_]+)"', html))
    for entry in review:
        assert f'data-subject="{entry["subject"]}"' in html
        assert entry["message"] in text
    # both records side by side, and a link into each vendor's app built from the connections' accounts
    both = next(entry for entry in review if entry["fakturownia_record"] and entry["crm_record"])
    block = html.split(f'data-subject="{both["subject"]}"', 1)[1].split('class="review-entry"', 1)[0]
    assert both["fakturownia_record"]["name"] in unescape(block) and both["crm_record"]["name"] in unescape(block)
    assert f"{server.sandbox.fakturownia_url}/clients/{both['fakturownia_client_id']}" in block
    assert f"{server.sandbox.sugester_url}/app/clients/{both['crm_client_id']}" in block
    invoice = next(entry for entry in quarantined if entry["stream"] == "invoices_to_deals")
    assert f"{server.sandbox.fakturownia_url}/invoices/{invoice['record_id']}" in html
    # runs with their summaries, cursors with lags
    assert "fakturownia_clients_sync/seed" in text and "fakturownia_invoices_to_deals/seed" in text
    assert '<a href="../dags/fakturownia_invoices_to_deals" target="_top">' in html  # opens the DAG in the UI
    cursors = html.split("<h3>Cursors</h3>", 1)[1].split("</table>", 1)[0]
    for stream in ("clients_sync", "invoices_to_deals"):
        assert re.search(rf"<td>{stream}</td><td>[0-9-]+ [0-9:]+ UTC</td><td>\d+ (s|min)</td>", cursors), cursors
    # departments by name from both APIs, with the mapping state and the clients that use them
    departments = html.split('id="departments"', 1)[1].split('id="users"', 1)[0]
    f_names = {d["id"]: d["name"] for d in server.sandbox.dump("fakturownia")["departments"]}
    for name in f_names.values():
        assert name in unescape(departments)
    assert departments.count(">mapped<") == 2 * len(f_names)
    # the pairing table: login AND e-mail
    users = text_of(html.split('id="users"', 1)[1].split('id="check"', 1)[0])
    assert "paired anna.kowalczyk" in users
    assert "same login other email piotr.wisniewski" in users
    assert "only in fakturownia jan.nowak" in users
    assert "No check has run yet" in text
    for secret in (server.sandbox.fakturownia_token, server.sandbox.sugester_token, "passwords.json"):
        assert secret not in html


def test_viewer_may_look_but_not_act(server: UiServer) -> None:
    viewer = server.session(VIEWER)
    assert viewer.get(server.page_url, timeout=60).status_code == 200
    store = server.store()
    try:
        subject = store.open_client_review()[0]["subject"]
        entry = store.open_quarantine_page()[0]
    finally:
        store.close()
    refused = viewer.post(
        server.page_url + "review-decision", data={"subject": subject, "decision": "ignore"}, timeout=30
    )
    assert refused.status_code == 403
    refused = viewer.post(
        server.page_url + "quarantine-retry",
        data={"stream": entry["stream"], "record_id": entry["record_id"]},
        timeout=30,
    )
    assert refused.status_code == 403
    store = server.store()
    try:
        assert decisions_by(store, VIEWER) == []
        assert store.open_quarantine_page()[0]["retry_requested_at"] is None
    finally:
        store.close()


def test_a_review_decision_is_stored_with_the_users_name_and_shown_in_the_audit(server: UiServer) -> None:
    store = server.store()
    try:
        entry = next(e for e in store.open_client_review() if e["reason"] == "possible_duplicate")
    finally:
        store.close()
    admin = server.session(ADMIN)
    response = admin.post(
        server.page_url + "review-decision",
        data={"subject": entry["subject"], "decision": "different"},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303
    assert urljoin(response.url, response.headers["location"]) == server.page_url + "?done=decided#review"
    store = server.store()
    try:
        [decision] = decisions_by(store, ADMIN)
    finally:
        store.close()
    assert (decision["subject"], decision["decision"], decision["applied_at"]) == (entry["subject"], "different", None)
    assert (decision["fakturownia_client_id"], decision["crm_client_id"]) == (
        entry["fakturownia_client_id"],
        entry["crm_client_id"],
    )
    page = text_of(admin.get(server.page_url + "?done=decided", timeout=60).text)
    assert "Decision stored; the next client sync applies it." in page
    assert f"Decided: they are different: create on the other side by {ADMIN}" in page
    assert re.search(rf"{re.escape(entry['subject'])} they are different: create on the other side .* {ADMIN} ", page)


def test_link_is_refused_for_records_the_entry_does_not_offer(server: UiServer) -> None:
    store = server.store()
    try:
        entry = next(e for e in store.open_client_review() if e["fakturownia_client_id"] and e["crm_client_id"])
        before = len(store.review_decision_audit())
    finally:
        store.close()
    response = server.session(ADMIN).post(
        server.page_url + "review-decision",
        data={
            "subject": entry["subject"],
            "decision": "link",
            "fakturownia_client_id": entry["fakturownia_client_id"],
            "crm_client_id": 999999,
        },
        timeout=30,
    )
    assert response.status_code == 400
    cross_site = server.session(ADMIN).post(
        server.page_url + "review-decision",
        data={"subject": entry["subject"], "decision": "ignore"},
        headers={"Origin": "https://evil.example"},
        timeout=30,
    )
    assert cross_site.status_code == 403
    store = server.store()
    try:
        assert len(store.review_decision_audit()) == before
    finally:
        store.close()


def test_quarantine_retry_is_asked_for_in_the_name_of_the_user(server: UiServer) -> None:
    store = server.store()
    try:
        entry = store.open_quarantine_page()[-1]
    finally:
        store.close()
    admin = server.session(ADMIN)
    response = admin.post(
        server.page_url + "quarantine-retry",
        data={"stream": entry["stream"], "record_id": entry["record_id"]},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303
    assert urljoin(response.url, response.headers["location"]) == server.page_url + "?done=retry#quarantine"
    store = server.store()
    try:
        after = next(e for e in store.open_quarantine_page() if e["record_id"] == entry["record_id"])
    finally:
        store.close()
    assert after["retry_requested_by"] == ADMIN and after["retry_requested_at"] is not None
    assert f"retry asked by {ADMIN}" in text_of(admin.get(server.page_url, timeout=60).text)


def test_the_review_list_downloads_as_the_exported_csv(server: UiServer) -> None:
    response = server.session(ADMIN).get(server.page_url + "review.csv", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert 'filename="client_review.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    store = server.store()
    try:
        assert sorted(row["subject"] for row in rows) == sorted(e["subject"] for e in store.open_client_review())
    finally:
        store.close()


def test_the_latest_integration_check_is_shown_section_by_section(server: UiServer) -> None:
    store = server.store()
    try:
        store.save_integration_check(
            False,
            {
                "accounts": [{"ok": True, "text": "Fakturownia token accepted", "details": None}],
                "departments": [{"ok": False, "text": "CRM department <b>9</b> is not mapped", "details": {"id": 9}}],
            },
        )
    finally:
        store.close()
    html = server.session(ADMIN).get(server.page_url, timeout=60).text
    check = html.split('id="check"', 1)[1]
    assert "problems found" in check
    assert "Fakturownia token accepted" in check
    assert "CRM department &lt;b&gt;9&lt;/b&gt; is not mapped" in check  # escaped, never markup


def test_a_failing_api_shows_in_its_section_and_the_page_still_renders(server: UiServer) -> None:
    server.sandbox.set_faults("sugester", error_rate=1.0)
    try:
        response = server.session(ADMIN).get(server.page_url, timeout=120)
    finally:
        server.sandbox.set_faults("sugester", error_rate=0.0)
    assert response.status_code == 200
    departments = text_of(response.text.split('id="departments"', 1)[1].split('id="users"', 1)[0])
    assert "The CRM did not list its departments" in departments
    assert "Quarantine" in response.text and "data-subject=" in response.text


def test_airflow_lists_the_plugin_once(server: UiServer) -> None:
    listed = subprocess.run(
        [AIRFLOW, "plugins", "--output", "json"], env=server.env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = re.findall(r'"name":\s*"([^"]+)"', listed.stdout)
    assert names.count("fakturownia_sync") == 1, listed.stdout[-2000:]
    assert PAGE_PATH.strip("/") in listed.stdout
    errors = requests.get(
        f"{server.url}/api/v2/plugins/importErrors",
        headers={"Authorization": f"Bearer {server.token(ADMIN)}"},
        timeout=30,
    )
    assert errors.status_code == 200 and errors.json()["total_entries"] == 0, errors.text


def test_the_page_is_listed_under_browse(server: UiServer) -> None:
    plugins = requests.get(
        f"{server.url}/api/v2/plugins", headers={"Authorization": f"Bearer {server.token(ADMIN)}"}, timeout=30
    ).json()["plugins"]
    [ours] = [plugin for plugin in plugins if plugin["name"] == "fakturownia_sync"]
    [view] = ours["external_views"]
    assert (view["category"], view["url_route"], view["href"]) == ("browse", "fakturownia-sync", "fakturownia-sync/")
    assert not Path(view["href"]).is_absolute()


def test_overview_counts_department_use_on_both_databases(store: StateStore) -> None:
    """The department counts read JSON inside the mirror and the link snapshots: SQLite and PostgreSQL alike."""
    store.save_fakturownia_clients(
        [({"id": 1, "department_id": 11}, None), ({"id": 2, "department_id": 11}, None), ({"id": 3}, None)]
    )
    store.link_clients(1, 101, "nip", {"fakturownia": {"department_id": 11}, "crm": {"department_id": 2}})
    store.link_clients(3, 103, "email", {"fakturownia": {"department_id": None}, "crm": {"department_id": None}})
    store.link_clients(2, 102, "created", None)
    assert store.department_usage() == {"fakturownia": {11: 2, None: 1}, "crm": {2: 1, None: 1}}
    assert store.crm_clients_linked_to([1, 2, 9]) == {1: 101, 2: 102}
    assert store.fakturownia_clients_linked_to([103, 104]) == {103: 3}
