"""Invoices → deals against the sandbox over HTTP: exactly one deal per invoice, edits, deletes, bad input."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.sync_harness import (
    deals_by_invoice,
    demo_config,
    duplicates,
    expected_candidates,
    make_sync,
)

SIZE = {"clients": 80, "invoices": 500, "crm_clients": 30}


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=11, **SIZE) as running:
        yield running


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


def fakturownia_put(sandbox: SandboxProcess, path: str, body: dict) -> dict:
    response = requests.put(
        f"{sandbox.fakturownia_url}{path}", json={"api_token": sandbox.fakturownia_token, **body}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def test_first_run_makes_exactly_one_deal_per_qualifying_invoice(sandbox: SandboxProcess, store: StateStore) -> None:
    config = demo_config()
    summary = make_sync(sandbox, store, config).run()

    grouped = deals_by_invoice(sandbox)
    assert duplicates(grouped) == {}
    candidates = expected_candidates(sandbox, config)
    quarantined = {int(entry.record_id) for entry in store.open_quarantine("invoices_to_deals")}
    assert set(grouped) | quarantined == candidates
    assert not set(grouped) & quarantined
    assert summary["deals_created"] == len(grouped) > 0.8 * len(candidates)
    assert summary["status"] == "success" and summary["cursor_after"] is not None
    reasons = summary["quarantined_by_reason"]
    assert reasons == {"malformed_date": 5}  # a typo'd NIP or a buyer with no card and no name holds nothing
    assert summary["deals_for_anonymous_buyers"] == 5 and summary["tax_id_warnings"] > 0

    invoices = {invoice["id"]: invoice for invoice in sandbox.dump("fakturownia")["invoices"]}
    crm_clients = {client["id"]: client for client in sandbox.dump("sugester")["clients"]}
    departments = {pair.fakturownia_department_id: pair.crm_department_id for pair in config.department_map}
    corrections = [i for i in invoices.values() if i["kind"] == "correction" and not i["cancelled"]]
    for invoice_id, [deal] in grouped.items():
        invoice = invoices[invoice_id]
        assert invoice["number"] in deal["name"]
        # a corrected invoice's deal shows the amount after its corrections (tests/test_deal_changes.py)
        corrected = sum((Decimal(c["price_gross"]) for c in corrections if c.get("invoice_id") == invoice_id), 0)
        expected = max(Decimal(invoice["price_gross"]) + corrected, Decimal(0)).quantize(Decimal("0.01"))
        assert Decimal(deal["price"]) == expected
        assert deal["currency"] == invoice["currency"]
        assert deal["url"] == f"{sandbox.fakturownia_url}/invoices/{invoice_id}"
        assert deal.get("department_id") == departments.get(invoice.get("department_id"))
        client = crm_clients[deal["client_id"]]
        if invoice["client_id"] is None:  # a blank buyer: the walk-in client of `anonymous_buyers: per_buyer`
            assert "walk-in" in client["name"]
            continue
        link = store.client_link(invoice["client_id"])
        assert link is not None and link.crm_client_id == client["id"]


def test_second_run_writes_nothing(sandbox: SandboxProcess, sqlite_store: StateStore) -> None:
    make_sync(sandbox, sqlite_store).run()
    deals_after_first = len(sandbox.dump("sugester")["deals"])
    sandbox.reset_stats()
    summary = make_sync(sandbox, sqlite_store, owner="tests/run-2").run()
    assert (summary["deals_created"], summary["deals_updated"], summary["clients_created"]) == (0, 0, 0)
    assert sandbox.stats("sugester")["writes"] == {}
    assert len(sandbox.dump("sugester")["deals"]) == deals_after_first
    # The sweep read one page, not the whole history again (client cards of quarantined invoices are re-read
    # to see whether they were fixed).
    assert sandbox.stats("fakturownia")["by_endpoint"]["GET /invoices.json"] == 1


def test_edited_invoice_updates_its_deal(sandbox: SandboxProcess, sqlite_store: StateStore) -> None:
    make_sync(sandbox, sqlite_store).run()
    grouped = deals_by_invoice(sandbox)
    corrected = {i.get("invoice_id") for i in sandbox.dump("fakturownia")["invoices"] if i["kind"] == "correction"}
    invoice_id = min(i for i in grouped if i > 0 and i not in corrected)  # its deal shows its own amount
    edit = {"invoice": {"price_gross": "4321.09", "number": "FV 99/X"}}
    fakturownia_put(sandbox, f"/invoices/{invoice_id}.json", edit)

    summary = make_sync(sandbox, sqlite_store, owner="tests/run-2").run()
    assert (summary["deals_updated"], summary["deals_created"]) == (1, 0)
    [deal] = deals_by_invoice(sandbox)[invoice_id]
    assert deal["price"] == "4321.09" and "FV 99/X" in deal["name"]
    assert deal["id"] == grouped[invoice_id][0]["id"]


def test_deleted_invoice_keeps_its_deal(sandbox: SandboxProcess, sqlite_store: StateStore) -> None:
    make_sync(sandbox, sqlite_store).run()
    invoice_id = min(i for i in deals_by_invoice(sandbox) if i > 0)
    requests.delete(
        f"{sandbox.fakturownia_url}/invoices/{invoice_id}.json",
        params={"api_token": sandbox.fakturownia_token},
        timeout=10,
    ).raise_for_status()
    summary = make_sync(sandbox, sqlite_store, owner="tests/run-2").run()
    assert summary["status"] == "success"
    assert len(deals_by_invoice(sandbox)[invoice_id]) == 1
    assert sqlite_store.deal_link(invoice_id).deal_id == deals_by_invoice(sandbox)[invoice_id][0]["id"]


def test_bad_records_are_quarantined_and_retried_once_fixed(sandbox: SandboxProcess, sqlite_store: StateStore) -> None:
    partial_map = demo_config(department_map=[{"fakturownia_department_id": 11, "crm_department_id": 1}])
    summary = make_sync(sandbox, sqlite_store, partial_map).run()
    assert summary["status"] == "success"
    open_entries = {int(e.record_id): e for e in sqlite_store.open_quarantine("invoices_to_deals")}
    unmapped = [i for i, e in open_entries.items() if e.reason == "unmapped_department"]
    malformed = [i for i, e in open_entries.items() if e.reason == "malformed_date"]
    assert unmapped and len(malformed) == 5
    assert all(e.payload["id"] == i and e.message for i, e in open_entries.items())

    # Fix one malformed date at the source and the department map in the config.
    fakturownia_put(sandbox, f"/invoices/{malformed[0]}.json", {"invoice": {"issue_date": "2025-03-15"}})
    summary = make_sync(sandbox, sqlite_store, demo_config(), owner="tests/run-2").run()
    still_open = sqlite_store.open_quarantine_counts("invoices_to_deals")
    assert "unmapped_department" not in still_open and still_open["malformed_date"] == 4
    grouped = deals_by_invoice(sandbox)
    reasons_now = {int(e.record_id): e.reason for e in sqlite_store.open_quarantine("invoices_to_deals")}
    # Each formerly unmapped invoice now has its deal, unless it is held for another reason (e.g. its NIP).
    for invoice_id in unmapped:
        assert len(grouped.get(invoice_id, [])) == 1 or reasons_now[invoice_id] != "unmapped_department"
    assert sum(len(grouped.get(i, [])) for i in unmapped) > 0.8 * len(unmapped)
    assert len(grouped[malformed[0]]) == 1
    assert summary["quarantine_resolved"] == sum(1 for i in [*unmapped, malformed[0]] if i in grouped)


def test_crm_validation_error_is_quarantined_with_its_message(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    make_sync(sandbox, sqlite_store).run()
    fresh = max(deals_by_invoice(sandbox))
    # An amount the CRM refuses (>= 1e12): a 422 for that deal only.
    fakturownia_put(sandbox, f"/invoices/{fresh}.json", {"invoice": {"price_gross": "1000000000000.00"}})
    summary = make_sync(sandbox, sqlite_store, owner="tests/run-2").run()
    assert summary["status"] == "success"
    assert summary["quarantined_by_reason"]["sugester_rejected"] == 1
    [entry] = [e for e in sqlite_store.open_quarantine("invoices_to_deals") if e.reason == "sugester_rejected"]
    assert int(entry.record_id) == fresh and "price" in entry.message
    fakturownia_put(sandbox, f"/invoices/{fresh}.json", {"invoice": {"price_gross": "100.00"}})
    summary = make_sync(sandbox, sqlite_store, owner="tests/run-3").run()
    assert summary["quarantine_resolved"] == 1
    assert deals_by_invoice(sandbox)[fresh][0]["price"] == "100.00"


def test_no_token_in_logs_or_state(sandbox: SandboxProcess, store: StateStore, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    make_sync(sandbox, store).run()
    sandbox.set_faults("sugester", error_rate=0.3)
    with store.engine.begin() as conn:  # forget the cursor: the second run re-reads the whole history under faults
        conn.exec_driver_sql("DELETE FROM sync_cursors")
    make_sync(sandbox, store, owner="tests/run-2").run()
    captured = caplog.text
    with store.engine.connect() as conn:
        for table in ("sync_runs", "sync_cursors", "invoice_deals", "client_links", "create_claims", "quarantine"):
            captured += repr(conn.exec_driver_sql(f"SELECT * FROM {table}").fetchall())
    assert "api_token=***" in captured and "quarantined" in captured  # the scan sees real traffic
    for token in (sandbox.fakturownia_token, sandbox.sugester_token):
        assert token not in captured
