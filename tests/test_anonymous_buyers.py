"""Buyers with no client card, no tax id and no e-mail (receipts, walk-in customers) against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from fakturownia_sync.invoice_clients import WALK_IN_BUYER_NAME
from fakturownia_sync.invoices_to_deals import InvoicesToDeals
from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.clients_harness import make_clients_sync
from tests.sync_harness import clients_for, deals_by_invoice, demo_config, make_sync


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=5, clients=10, invoices=0, crm_clients=5) as running:
        yield running


def receipt(sandbox: SandboxProcess, buyer_name: str, street: str = "ul. Długa 5", tax_no: str = "") -> int:
    invoice = {
        "kind": "receipt", "issue_date": "2025-03-01", "sell_date": "2025-03-01", "buyer_name": buyer_name,
        "buyer_street": street, "buyer_post_code": "00-950", "buyer_city": "Warszawa", "buyer_tax_no": tax_no,
        "positions": [{"name": "Usługa", "quantity": 1, "total_price_gross": "123.00", "tax": 23}],
    }  # fmt: skip
    response = requests.post(
        f"{sandbox.fakturownia_url}/invoices.json",
        json={"api_token": sandbox.fakturownia_token, "invoice": invoice},
        timeout=10,
    )
    response.raise_for_status()
    return int(response.json()["id"])


def test_per_buyer_makes_one_client_per_buyer_and_name_and_counts_them(sandbox, store: StateStore) -> None:
    first, again = receipt(sandbox, "Jan Kowalski"), receipt(sandbox, "JAN  KOWALSKI", "ul. dluga 5")
    other, junk_nip = receipt(sandbox, "Anna Nowak"), receipt(sandbox, "Ewa Lis", tax_no="0000000000")
    # (a buyer with no name at all goes to the one walk-in client: the seeded blank buyers of test_invoices_to_deals)
    summary = make_sync(sandbox, store).run()
    deals = deals_by_invoice(sandbox)
    client_of = {invoice: deals[invoice][0]["client_id"] for invoice in (first, again, other, junk_nip)}
    assert client_of[first] == client_of[again]
    assert len({client_of[first], client_of[other], client_of[junk_nip]}) == 3
    crm = {c["id"]: c for c in sandbox.dump("sugester")["clients"]}
    assert "Created from document" in crm[client_of[first]]["note"]
    assert summary["deals_for_anonymous_buyers"] == 4 and summary["quarantined_by_reason"] == {}
    assert summary["tax_id_warnings"] == 1

    again_summary = make_sync(sandbox, store, owner="tests/run-2").run()  # a later run creates none again
    assert again_summary["clients_created"] == 0


def test_anonymous_buyers_clients_are_not_copied_back_to_fakturownia_as_cards(sandbox, store: StateStore) -> None:
    receipt(sandbox, "Jan Kowalski")
    make_sync(sandbox, store).run()
    cards_before = len(sandbox.dump("fakturownia")["clients"])
    summary = make_clients_sync(sandbox, store).run()
    assert summary["from_documents_not_copied"] == 1
    assert len(sandbox.dump("fakturownia")["clients"]) == cards_before + summary["created_in_fakturownia"]
    cards = [c for c in sandbox.dump("fakturownia")["clients"] if "Kowalski" in (c.get("name") or "")]
    assert cards == []  # the buyer lives in Fakturownia as its documents; a card would be a second copy


def test_catch_all_puts_every_anonymous_buyer_on_the_configured_client(sandbox, store: StateStore) -> None:
    crm_client = sandbox.dump("sugester")["clients"][0]["id"]
    invoices = [receipt(sandbox, "Jan Kowalski"), receipt(sandbox, "Anna Nowak")]
    config = demo_config(anonymous_buyers={"policy": "catch_all", "crm_client_id": crm_client})
    summary = make_sync(sandbox, store, config).run()
    deals = deals_by_invoice(sandbox)
    assert {deals[i][0]["client_id"] for i in invoices} == {crm_client}
    assert summary["clients_created"] == 0 and summary["deals_for_anonymous_buyers"] == 2


def test_quarantine_policy_holds_anonymous_buyers(sandbox, store: StateStore) -> None:
    invoice = receipt(sandbox, "Jan Kowalski")
    summary = make_sync(sandbox, store, demo_config(anonymous_buyers={"policy": "quarantine"})).run()
    assert summary["quarantined_by_reason"] == {"anonymous_buyer": 1}
    assert invoice not in deals_by_invoice(sandbox)


def test_a_replaced_state_db_finds_anonymous_buyers_clients_by_their_marker_and_moves_no_deal(tmp_path) -> None:
    # Seeded invoices include buyers with no name at all (the walk-in client), which the API refuses to make.
    with SandboxProcess(seed=7, clients=40, invoices=60, crm_clients=20) as sandbox:
        invoices = [receipt(sandbox, "Jan Kowalski"), receipt(sandbox, "Jan Kowalski"), receipt(sandbox, "Anna Nowak")]
        first = StateStore.open(f"sqlite:///{tmp_path / 'first.db'}")
        try:
            anonymous = make_sync(sandbox, first).run()["deals_for_anonymous_buyers"]
        finally:
            first.close()
        crm = sandbox.dump("sugester")["clients"]
        marked = {c["id"] for c in crm if "[fakturownia_sync anonymous:" in str(c.get("note") or "")}
        walk_in = {c["id"] for c in crm if c["name"] == WALK_IN_BUYER_NAME}
        assert anonymous > len(invoices) and len(marked) >= 3 and len(walk_in) == 1
        deals_before = deals_by_invoice(sandbox)

        replaced = StateStore.open(f"sqlite:///{tmp_path / 'replaced.db'}")  # lost: a new, empty SQLite file
        try:
            fakturownia, crm_api = clients_for(sandbox)
            dry = InvoicesToDeals(fakturownia, crm_api, replaced, demo_config(), owner="tests/dry", dry_run=True).run()
            summary = make_sync(sandbox, replaced, owner="tests/run-2").run()
        finally:
            replaced.close()
        assert dry["clients_created"] == 0
        assert summary["clients_created"] == 0 and summary["deals_created"] == summary["deals_updated"] == 0
        assert summary["deals_for_anonymous_buyers"] == anonymous  # each deal once, though handled twice
        assert {c["id"] for c in sandbox.dump("sugester")["clients"]} == {c["id"] for c in crm}
        assert deals_by_invoice(sandbox) == deals_before  # no deal moved to another client
