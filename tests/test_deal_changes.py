"""Changes that would leave deals wrong are applied or said (issue 8, item 8), against the sandbox over HTTP.

A kind change or a cancellation marks the deal; a config change that alters how deals look is re-applied in
bounded batches; a correction moves the deal of the invoice it corrects; a deal deleted in the CRM is found
by the periodic check and reported, never recreated.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from fakturownia_sync import deal_upkeep
from fakturownia_sync.deal_mapping import CANCELLED_MARK, OUT_OF_KINDS_MARK, deal_shape_fingerprint
from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.sync_harness import deals_by_invoice, demo_config, duplicates, make_sync

SIZE = {"clients": 40, "invoices": 160, "crm_clients": 15}
CHECK_STREAM = "invoices_to_deals.deleted_deals_check"


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=23, **SIZE) as running:
        yield running


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


def fakturownia(sandbox: SandboxProcess, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url, token = f"{sandbox.fakturownia_url}{path}", sandbox.fakturownia_token
    if body is None:
        response = requests.request(method, url, params={"api_token": token}, timeout=10)
    else:
        response = requests.request(method, url, json={"api_token": token, **body}, timeout=10)
    response.raise_for_status()
    return response.json()


def invoices_of(sandbox: SandboxProcess) -> dict[int, dict[str, Any]]:
    return {invoice["id"]: invoice for invoice in sandbox.dump("fakturownia")["invoices"]}


def corrections_by_invoice(sandbox: SandboxProcess) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for invoice in invoices_of(sandbox).values():
        if invoice["kind"] == "correction" and invoice.get("invoice_id") and not invoice.get("cancelled"):
            grouped.setdefault(invoice["invoice_id"], []).append(invoice)
    return grouped


def expected_price(invoice: dict[str, Any], corrections: list[dict[str, Any]], field: str) -> Decimal:
    total = Decimal(invoice[field]) + sum((Decimal(c[field]) for c in corrections), Decimal(0))
    return max(total, Decimal(0)).quantize(Decimal("0.01"))


def plain_vat_deals(sandbox: SandboxProcess, count: int) -> list[int]:
    """Invoices of kind `vat` with one deal and no correction, lowest ids first."""
    invoices, corrected = invoices_of(sandbox), corrections_by_invoice(sandbox)
    ids = [
        invoice_id
        for invoice_id, deals in sorted(deals_by_invoice(sandbox).items())
        if invoice_id > 0 and len(deals) == 1 and invoices[invoice_id]["kind"] == "vat"
        and not invoices[invoice_id]["cancelled"] and invoice_id not in corrected
    ]  # fmt: skip
    assert len(ids) >= count
    return ids[:count]


def test_invoice_leaving_the_kinds_or_cancelled_keeps_its_deal_marked_and_counted(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    make_sync(sandbox, sqlite_store).run()
    to_proforma, to_cancel = plain_vat_deals(sandbox, 2)
    fakturownia(sandbox, "PUT", f"/invoices/{to_proforma}.json", {"invoice": {"kind": "proforma"}})
    fakturownia(sandbox, "PUT", f"/invoices/{to_cancel}.json", {"invoice": {"cancelled": True}})
    deals_before = len(sandbox.dump("sugester")["deals"])

    summary = make_sync(sandbox, sqlite_store, owner="tests/run-2").run()
    assert summary["deals_marked_out_of_kinds"] == 1 and summary["deals_marked_cancelled"] == 1
    assert summary["skipped_by_kind"].get("proforma", 0) == 0  # it has a deal: marked, not "skipped"
    grouped = deals_by_invoice(sandbox)
    [proforma_deal], [cancelled_deal] = grouped[to_proforma], grouped[to_cancel]
    assert proforma_deal["name"].endswith(OUT_OF_KINDS_MARK) and "proforma" in proforma_deal["name"]
    assert CANCELLED_MARK in cancelled_deal["name"]
    assert len(sandbox.dump("sugester")["deals"]) == deals_before  # nothing deleted, nothing created

    # Reversible: the invoice comes back and the marker goes.
    fakturownia(sandbox, "PUT", f"/invoices/{to_proforma}.json", {"invoice": {"kind": "vat"}})
    fakturownia(sandbox, "PUT", f"/invoices/{to_cancel}.json", {"invoice": {"cancelled": False}})
    again = make_sync(sandbox, sqlite_store, owner="tests/run-3").run()
    assert (again["deals_marked_out_of_kinds"], again["deals_marked_cancelled"], again["deals_updated"]) == (0, 0, 2)
    grouped = deals_by_invoice(sandbox)
    for invoice_id in (to_proforma, to_cancel):
        [deal] = grouped[invoice_id]
        assert OUT_OF_KINDS_MARK not in deal["name"] and CANCELLED_MARK not in deal["name"]


def test_deal_amount_change_is_reapplied_to_every_deal_once_in_bounded_batches(
    sandbox: SandboxProcess, sqlite_store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_sync(sandbox, sqlite_store).run()
    net = demo_config(deal_amount="net")
    total = sqlite_store.count_stale_deal_links(deal_shape_fingerprint(net))
    assert total > 40
    limit = total // 2 + 3
    monkeypatch.setattr(deal_upkeep, "REAPPLY_LIMIT", limit)

    sandbox.reset_stats()
    first = make_sync(sandbox, sqlite_store, net, owner="tests/run-2").run()
    assert (first["deals_reapplied"], first["deals_reapply_remaining"]) == (limit, total - limit)
    second = make_sync(sandbox, sqlite_store, net, owner="tests/run-3").run()
    assert (second["deals_reapplied"], second["deals_reapply_remaining"]) == (total - limit, 0)

    invoices, corrected = invoices_of(sandbox), corrections_by_invoice(sandbox)
    changed = 0
    for invoice_id, [deal] in deals_by_invoice(sandbox).items():
        invoice = invoices[invoice_id]
        assert Decimal(deal["price"]) == expected_price(invoice, corrected.get(invoice_id, []), "price_net")
        changed += expected_price(invoice, corrected.get(invoice_id, []), "price_gross") != Decimal(deal["price"])
    # Each deal whose amount changed was written exactly once; nothing else was written.
    assert sandbox.stats("sugester")["writes"] == {"PUT /app/deals/{id}.json": changed}
    assert first["deals_updated"] + second["deals_updated"] == changed

    sandbox.reset_stats()
    third = make_sync(sandbox, sqlite_store, net, owner="tests/run-4").run()
    assert (third["deals_reapplied"], third["deals_reapply_remaining"]) == (0, 0)
    assert sandbox.stats("sugester")["writes"] == {}


@pytest.mark.parametrize("kinds", ["default", "with_correction"])
def test_correction_moves_the_deal_of_the_invoice_it_corrects_and_gets_no_deal(
    sandbox: SandboxProcess, sqlite_store: StateStore, kinds: str
) -> None:
    config = demo_config()
    if kinds == "with_correction":
        config = demo_config(invoice_kinds=[*config.invoice_kinds, "correction"])
    summary = make_sync(sandbox, sqlite_store, config).run()
    invoices, corrected = invoices_of(sandbox), corrections_by_invoice(sandbox)
    grouped = deals_by_invoice(sandbox)
    assert duplicates(grouped) == {}
    assert not [i for i in grouped if invoices.get(i, {}).get("kind") == "correction"]  # no deal of its own
    assert not [r for r in summary["quarantined_by_reason"] if r.endswith("_rejected")]
    with_deal = [invoice_id for invoice_id in corrected if invoice_id in grouped]
    assert with_deal and summary["corrections_applied"] + summary["corrections_without_deal"] >= len(with_deal)
    for invoice_id in with_deal:
        [deal] = grouped[invoice_id]
        assert Decimal(deal["price"]) == expected_price(invoices[invoice_id], corrected[invoice_id], "price_gross")
        assert all(c["number"] in deal["description"] for c in corrected[invoice_id])

    # A correction issued now, for an invoice whose deal exists: the next run moves that deal.
    [target] = plain_vat_deals(sandbox, 1)
    position = fakturownia(sandbox, "GET", f"/invoices/{target}.json")["positions"][0]
    correction = fakturownia(
        sandbox,
        "POST",
        "/invoices.json",
        {
            "invoice": {
                "kind": "correction",
                "invoice_id": target,
                "client_id": invoices[target]["client_id"],
                "issue_date": invoices[target]["issue_date"],
                "positions": [
                    {"name": f"Korekta: {position['name']}", "quantity": -1, "total_price_gross": "-100.00", "tax": 23}
                ],
            }
        },
    )
    before = Decimal(grouped[target][0]["price"])
    sandbox.reset_stats()
    again = make_sync(sandbox, sqlite_store, config, owner="tests/run-2").run()
    assert (again["corrections_applied"], again["deals_updated"], again["deals_created"]) == (1, 1, 0)
    [deal] = deals_by_invoice(sandbox)[target]
    assert Decimal(deal["price"]) == before + Decimal(correction["price_gross"])
    assert correction["number"] in deal["description"]
    assert sandbox.stats("sugester")["writes"] == {"PUT /app/deals/{id}.json": 1}


def test_deal_deleted_in_the_crm_is_found_by_the_daily_check_reported_and_never_recreated(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    make_sync(sandbox, sqlite_store).run()
    [invoice_id] = plain_vat_deals(sandbox, 1)
    [deal] = deals_by_invoice(sandbox)[invoice_id]
    requests.delete(
        f"{sandbox.sugester_url}/app/deals/{deal['id']}.json", params={"api_token": sandbox.sugester_token}, timeout=10
    ).raise_for_status()
    deals_left = len(sandbox.dump("sugester")["deals"])

    # Within a day of the last check: nothing is scanned, nothing is noticed (the invoice is not edited).
    soon = make_sync(sandbox, sqlite_store, owner="tests/run-2").run()
    assert soon["deals_deleted_in_crm"] == 0 and soon["deals_checked_in_crm"] == 0

    sqlite_store.set_cursor(CHECK_STREAM, datetime.now(UTC) - timedelta(days=1, minutes=1))
    summary = make_sync(sandbox, sqlite_store, owner="tests/run-3").run()
    assert summary["deals_deleted_in_crm"] == 1 and summary["deals_checked_in_crm"] > 40
    assert summary["quarantined_by_reason"] == {"deal_deleted_in_crm": 1}
    [entry] = [e for e in sqlite_store.open_quarantine("invoices_to_deals") if e.reason == "deal_deleted_in_crm"]
    assert entry.record_id == str(invoice_id) and str(deal["id"]) in entry.message
    assert sqlite_store.deal_link(invoice_id).deal_deleted_at is not None

    # Edited and met again, checked again: still reported, never recreated, no write sent for it.
    fakturownia(sandbox, "PUT", f"/invoices/{invoice_id}.json", {"invoice": {"price_gross": "999.99"}})
    sqlite_store.set_cursor(CHECK_STREAM, datetime.now(UTC) - timedelta(days=2))
    sandbox.reset_stats()
    later = make_sync(sandbox, sqlite_store, owner="tests/run-4").run()
    assert later["deals_deleted_in_crm"] == 0 and later["deals_created"] == 0
    assert later["quarantined_by_reason"] == {"deal_deleted_in_crm": 1}
    assert sandbox.stats("sugester")["writes"] == {}
    assert len(sandbox.dump("sugester")["deals"]) == deals_left
    assert invoice_id not in deals_by_invoice(sandbox)
