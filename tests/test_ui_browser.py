"""The integration page in a real browser (Debian's headless Chromium driven by Playwright, nothing downloaded),
against a real api-server: log in through the login form, open the page under Browse, act on the review list,
run the client sync and see the link in both systems, and trigger the client sync from its form.

Screenshots go to `test-artifacts/` (git-ignored); `ui-page-full.png` is the one the README shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from fakturownia_sync.config import load_config
from fakturownia_sync.sugester_client import external_ids_of
from tests.airflow_harness import ROOT
from tests.clients_harness import clients_of, copies_per_source, make_clients_sync
from tests.ui_harness import ADMIN, CONFIG, USERS, UiServer, decisions_by, ui_server

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
PAGE_TITLE = "Fakturownia ↔ CRM sync"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, airflow_template: Path) -> Iterator[UiServer]:
    with ui_server(tmp_path_factory.mktemp("ui_browser"), airflow_template) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, server: UiServer) -> Iterator[Page]:
    """A fresh browser context logged in as the admin through the real login form."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    opened.goto(server.url + "/")
    expect(opened).to_have_url(re.compile(r"/auth/login"))
    opened.fill("input[name=username]", ADMIN)
    opened.fill("input[name=password]", USERS[ADMIN][1])
    opened.click("button[type=submit]")
    expect(opened).not_to_have_url(re.compile(r"/auth/login"))
    try:
        yield opened
    finally:
        context.close()


def test_link_two_clients_from_the_page_under_browse_and_the_client_sync_links_them(
    page: Page, server: UiServer
) -> None:
    store = server.store()
    try:
        quarantined = store.open_quarantine_page()
        review = store.open_client_review()
    finally:
        store.close()
    pair_entry = next(
        entry
        for entry in review
        if entry["subject"].startswith("fakturownia:")
        and entry["crm_record"]
        and entry["reason"].startswith("ambiguous")
    )
    f_id, c_id = pair_entry["fakturownia_client_id"], pair_entry["crm_client_id"]

    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name=PAGE_TITLE).click()
    expect(page).to_have_url(re.compile(r"/plugin/fakturownia-sync"))
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name=PAGE_TITLE)).to_be_visible()
    expect(frame.locator("tr[data-stream]")).to_have_count(len(quarantined))
    expect(frame.locator(".review-entry")).to_have_count(len(review))
    page.screenshot(path=ARTIFACTS / "ui-page-under-browse.png")

    entry = frame.locator(f'.review-entry[data-subject="{pair_entry["subject"]}"]')
    entry.scroll_into_view_if_needed()
    entry.get_by_role("button", name=f"Link these two (Fakturownia {f_id} + CRM {c_id})").click()
    expect(frame.get_by_role("status")).to_have_text("Decision stored; the next client sync applies it.")
    expect(frame.locator(f'.review-entry[data-subject="{pair_entry["subject"]}"] .note')).to_contain_text(
        f"link these two by {ADMIN}"
    )
    page.screenshot(path=ARTIFACTS / "ui-decision-stored.png")
    store = server.store()
    try:
        [decision] = decisions_by(store, ADMIN)
        assert (decision["decision"], decision["fakturownia_client_id"], decision["crm_client_id"]) == (
            "link",
            f_id,
            c_id,
        )

        make_clients_sync(server.sandbox, store, load_config(CONFIG), owner="fakturownia_clients_sync/after-link").run()

        link = store.client_link(f_id)
        assert link is not None and link.crm_client_id == c_id, store.review_decision_audit()
        [applied] = decisions_by(store, ADMIN)
        assert applied["applied_at"] is not None
    finally:
        store.close()
    crm_client = clients_of(server.sandbox, "sugester")[c_id]
    assert external_ids_of(crm_client).get("fakturownia_client_id") == str(f_id)
    crm_copies, _ = copies_per_source(server.sandbox)
    assert crm_copies[str(f_id)] == 1  # linked, not copied a second time

    page.reload()
    frame = page.frame_locator("iframe")
    audit = frame.locator("table.audit")
    expect(audit).to_contain_text(f"Fakturownia {f_id} · CRM {c_id}")
    expect(audit).not_to_contain_text("waiting for the next client sync")
    audit.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "ui-decision-applied.png")


def test_full_page_screenshot(browser: Browser, server: UiServer) -> None:
    """The whole page at a readable width, the picture the README shows (docs/ui-page.png)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "_token", "value": server.token(ADMIN), "url": server.url}])
    try:
        opened = context.new_page()
        opened.goto(server.page_url)
        expect(opened.get_by_role("heading", name="Quarantine")).to_be_visible()
        target = ARTIFACTS / "ui-page-full.png"
        opened.screenshot(path=target, full_page=True)
        assert target.stat().st_size > 50_000
    finally:
        context.close()


def test_trigger_the_client_sync_from_its_form_with_the_defaults(page: Page, server: UiServer) -> None:
    runs_url = f"{server.url}/api/v2/dags/fakturownia_clients_sync/dagRuns"
    headers = {"Authorization": f"Bearer {server.token(ADMIN)}"}
    before = requests.get(runs_url, headers=headers, timeout=30).json()["total_entries"]

    page.goto(server.url + "/dags/fakturownia_clients_sync")
    page.get_by_role("button", name=re.compile(r"^\s*Trigger")).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Trigger Dag - fakturownia_clients_sync")
    submit = dialog.get_by_role("button", name=re.compile(r"^\s*Trigger"))
    expect(submit).to_be_enabled()
    page.screenshot(path=ARTIFACTS / "ui-trigger-form.png")
    submit.click()

    deadline = time.monotonic() + 30
    runs = requests.get(runs_url, headers=headers, timeout=30).json()
    while runs["total_entries"] == before and time.monotonic() < deadline:
        time.sleep(0.5)
        runs = requests.get(runs_url, headers=headers, timeout=30).json()
    assert runs["total_entries"] == before + 1, runs
    run = max(runs["dag_runs"], key=lambda r: r["run_after"])
    assert run["run_type"] == "manual" and run["state"] == "queued", run  # no scheduler here to start it
    # the form's defaults: no full re-read, the review CSV at its default place
    assert not run["conf"].get("full") and not run["conf"].get("review_csv_path"), run["conf"]
    page.screenshot(path=ARTIFACTS / "ui-triggered.png")
