"""CRM deals → Fakturownia invoices against the sandbox over real sockets: exactly one invoice per marked deal,
lost answers, a worker killed mid-create, no loop with invoices → deals, bad input quarantined and retried.

Run as `python -m tests.test_deals_to_invoices '<json spec>'` it is also the worker process a test SIGKILLs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from fakturownia_sync.config import SyncConfig, load_config
from fakturownia_sync.connections import SyncEndpoints
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY
from fakturownia_sync.deals_to_invoices import STREAM, DealsToInvoices, UnconfirmedInvoices
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.state import StateStore
from sandbox.demo_config import DEMO_CONFIG
from sandbox.process import SandboxProcess
from sandbox.seed import INVOICED_STATUS, INVOICING_STATUS, crm_deal_statuses
from tests.airflow_harness import FAKTUROWNIA_TOKEN, SUGESTER_TOKEN, connections_env, dags_test
from tests.sync_harness import clients_for, deals_by_invoice, duplicates, make_sync

ROOT = Path(__file__).resolve().parents[1]
SIZE = {"seed": 9, "clients": 40, "invoices": 60, "crm_clients": 30}
STATUS_ID = {status["name"]: status["id"] for status in crm_deal_statuses()}
INVOICING = {"enabled": True, "statuses": [INVOICING_STATUS], "invoiced_status": INVOICED_STATUS}


def config(**invoicing: Any) -> SyncConfig:
    return load_config({**DEMO_CONFIG, "deal_invoicing": {**INVOICING, **invoicing}})


def engine(sandbox: Any, store: StateStore, cfg: SyncConfig | None = None, owner: str = "tests/d2i-1"):
    fakturownia, crm = clients_for(sandbox)
    return DealsToInvoices(fakturownia, crm, store, cfg or config(), owner=owner)


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(**SIZE) as running:
        yield running


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def crm_post(sandbox: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(f"{sandbox.sugester_url}/app/{path}", json={"api_token": sandbox.sugester_token, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def crm_put(sandbox: Any, path: str, body: dict[str, Any]) -> None:
    answer = requests.put(f"{sandbox.sugester_url}/app/{path}", json={"api_token": sandbox.sugester_token, **body})
    assert answer.status_code == 200, answer.text


def crm_clients(sandbox: Any) -> list[dict[str, Any]]:
    return [c for c in sandbox.dump("sugester")["clients"] if c.get("name") and c.get("email")]


def open_deal(sandbox: Any, client_id: int | None, name: str, price: Any = "1230.00", **fields: Any) -> int:
    """A deal as a salesperson makes it: on a client, in the invoicing status, owned by a CRM user."""
    deal = {"name": name, "price": price, "client_id": client_id, "status_id": STATUS_ID[INVOICING_STATUS]}
    deal.update(responsible_id=1, **fields)
    return int(crm_post(sandbox, "deals.json", {"deal": deal})["id"])


def invoices_by_deal(sandbox: Any) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for invoice in sandbox.dump("fakturownia")["invoices"]:
        if str(invoice.get("oid") or "").isdigit():
            grouped.setdefault(int(invoice["oid"]), []).append(invoice)
    return grouped


def deals(sandbox: Any) -> dict[int, dict[str, Any]]:
    return {int(deal["id"]): deal for deal in sandbox.dump("sugester")["deals"]}


def marked_deals(sandbox: Any, count: int) -> list[int]:
    clients = crm_clients(sandbox)
    return [open_deal(sandbox, clients[n]["id"], f"Usługa wdrożeniowa nr {n}") for n in range(count)]


# One invoice per marked deal ------------------------------------------------------------------------------


def test_each_marked_deal_gets_one_invoice_and_a_rerun_writes_nothing(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    ids = marked_deals(sandbox, 4)
    other = open_deal(sandbox, crm_clients(sandbox)[5]["id"], "Jeszcze w negocjacjach")
    crm_put(sandbox, f"deals/{other}.json", {"deal": {"status_id": STATUS_ID["W negocjacjach"]}})
    summary = engine(sandbox, sqlite_store).run()
    assert summary["status"] == "success" and summary["invoices_created"] == 4
    grouped = invoices_by_deal(sandbox)
    assert sorted(grouped) == sorted(ids) and all(len(found) == 1 for found in grouped.values())
    after = deals(sandbox)
    for deal_id in ids:
        [invoice] = grouped[deal_id]
        deal = after[deal_id]
        assert invoice["kind"] == "vat" and invoice["currency"] == "PLN" and invoice["price_gross"] == "1230.0"
        assert [p["name"] for p in invoice["positions"]] == [deal["name"]]
        assert invoice["positions"][0]["quantity"] == "1.0" and invoice["positions"][0]["tax"] == "23"
        assert deal["external_ids"][FAKTUROWNIA_INVOICE_KEY] == str(invoice["id"])
        assert deal["url"].endswith(f"/invoices/{invoice['id']}")
        assert deal["status_id"] == STATUS_ID[INVOICED_STATUS]
        assert sqlite_store.deal_link(invoice["id"]).deal_id == deal_id
        link = sqlite_store.client_link(invoice["client_id"])
        assert link is not None and link.crm_client_id == deal["client_id"]
    assert other not in grouped

    sandbox.reset_stats()
    again = engine(sandbox, sqlite_store, owner="tests/d2i-2").run()
    assert again["invoices_created"] == 0 and again["deals_written_back"] == 0
    assert sum(sandbox.stats("fakturownia")["writes"].values()) == 0
    assert sum(sandbox.stats("sugester")["writes"].values()) == 0


def test_price_taken_as_net_with_the_configured_tax_kind_and_term(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    [deal_id] = marked_deals(sandbox, 1)
    cfg = config(price="net", tax="8", invoice_kind="proforma", payment_days=30, invoiced_status=None)
    engine(sandbox, sqlite_store, cfg).run()
    [invoice] = invoices_by_deal(sandbox)[deal_id]
    assert invoice["kind"] == "proforma" and invoice["price_net"] == "1230.0" and invoice["price_gross"] == "1328.4"
    assert invoice["payment_to_kind"] == 30 and invoice["oid"] == str(deal_id)
    assert deals(sandbox)[deal_id]["status_id"] == STATUS_ID[INVOICING_STATUS]  # no invoiced_status: stays


def test_disabled_by_default_invoices_nothing(
    sandbox: SandboxProcess, sqlite_store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    marked_deals(sandbox, 2)
    fakturownia, crm = clients_for(sandbox)
    defaults = load_config({key: value for key, value in DEMO_CONFIG.items() if key != "deal_invoicing"})
    assert defaults.deal_invoicing.enabled is False
    with caplog.at_level("INFO", logger="fakturownia_sync.deals_to_invoices"):
        summary = DealsToInvoices(fakturownia, crm, sqlite_store, defaults, owner="t").run()
    assert summary["status"] == "disabled" and summary["invoices_created"] == 0
    assert "Deal invoicing is off" in caplog.records[0].getMessage()
    assert invoices_by_deal(sandbox) == {}


def test_a_status_the_crm_does_not_have_fails_naming_it(sandbox: SandboxProcess, sqlite_store: StateStore) -> None:
    with pytest.raises(ConfigError, match="no deal status 'Wygrana sprzedaż'"):
        engine(sandbox, sqlite_store, config(statuses=["Wygrany", "Wygrana sprzedaż"])).run()
    by_id = engine(sandbox, sqlite_store, config(statuses=[STATUS_ID[INVOICING_STATUS]])).run()
    assert by_id["statuses"] == [INVOICING_STATUS]


# Lost answers and a killed worker --------------------------------------------------------------------------


def lose_invoice_replies(sandbox: Any, count: int) -> None:
    answer = requests.post(f"{sandbox.fakturownia_url}/_sandbox/lose_invoice_create_replies", json={"count": count})
    assert answer.ok, answer.text


def test_lost_answers_end_with_one_invoice_per_deal(sandbox: SandboxProcess, sqlite_store: StateStore) -> None:
    ids = marked_deals(sandbox, 3)
    lose_invoice_replies(sandbox, 3)
    summary = engine(sandbox, sqlite_store).run()
    assert sandbox.stats("fakturownia")["faults"]["drop"] == 3
    assert summary["invoices_recovered"] == 3 and summary["status"] == "success"
    grouped = invoices_by_deal(sandbox)
    assert {deal_id: len(grouped[deal_id]) for deal_id in ids} == dict.fromkeys(ids, 1)
    assert all(FAKTUROWNIA_INVOICE_KEY in deals(sandbox)[deal_id]["external_ids"] for deal_id in ids)


def test_a_second_create_for_a_deal_is_refused_by_oid_unique(sandbox: SandboxProcess) -> None:
    fakturownia, _crm = clients_for(sandbox)
    body = {"buyer_name": "Firma", "oid": "777", "oid_unique": "yes", "positions": [{"name": "x", "price_net": 1}]}
    fakturownia.create_invoice(body)
    second = requests.post(
        f"{sandbox.fakturownia_url}/invoices.json", json={"api_token": sandbox.fakturownia_token, "invoice": body}
    )
    assert second.status_code == 422 and second.json() == {"code": "error", "message": {"oid": ["- jest już zajęte"]}}
    assert [invoice["oid"] for invoice in fakturownia.invoices_by_oid("777")] == ["777"]


def _workers_writes(sandbox: Any) -> int:
    return sandbox.stats("fakturownia")["writes"].get("POST /invoices.json", 0)


def test_sigkill_between_create_and_commit_ends_with_one_invoice_per_deal(tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    owner = "crm_deals_to_invoices/scheduled__2026-11-25T10:00:00+00:00"
    with SandboxProcess(**SIZE, latency_ms=40) as sandbox:
        ids = marked_deals(sandbox, 12)
        spec = {**SyncEndpoints.of(sandbox, state_url).as_mapping(), "owner": owner}
        for kill_at in (2, 6):
            command = [sys.executable, "-m", "tests.test_deals_to_invoices", json.dumps(spec)]
            worker = subprocess.Popen(command, cwd=ROOT)
            deadline = time.monotonic() + 120
            while _workers_writes(sandbox) < kill_at and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            os.kill(worker.pid, signal.SIGKILL)
            assert worker.wait() == -signal.SIGKILL, "the worker finished before it could be killed"
        store = StateStore.open(state_url)
        half_done = [d for d, found in invoices_by_deal(sandbox).items() if not deals(sandbox)[d]["external_ids"]]
        assert store.unconfirmed_creates("fakturownia_invoice") or half_done, "the kills should leave work unfinished"
        summary = engine(sandbox, store, owner=owner).run()  # the task's retry: same run, same owner
        held = {int(entry.record_id) for entry in store.open_quarantine(STREAM)}  # e.g. a client for review
        grouped = invoices_by_deal(sandbox)
        after = deals(sandbox)
        store.close()
    assert summary["status"] == "success" and len(held) <= 2
    assert {deal_id: len(grouped.get(deal_id, [])) for deal_id in ids} == {d: 0 if d in held else 1 for d in ids}
    invoiced = [d for d in ids if d not in held]
    assert all(after[d]["external_ids"][FAKTUROWNIA_INVOICE_KEY] == str(grouped[d][0]["id"]) for d in invoiced)


def test_create_landed_but_claim_never_confirmed_is_found_by_oid(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    """The crash window itself, for another run after the take-over window: the invoice exists, the claim
    is unconfirmed and not linked. The invoices → deals sync meeting it first links it to its deal."""
    [deal_id] = marked_deals(sandbox, 1)
    dead = "crm_deals_to_invoices/dead-run"
    claim = sqlite_store.claim_create("fakturownia_invoice", [f"deal:{deal_id}"], dead).claim
    assert claim is not None
    fakturownia, _crm = clients_for(sandbox)
    landed = fakturownia.create_invoice(
        {"buyer_name": "Ktoś", "oid": str(deal_id), "oid_unique": "yes", "positions": [{"name": "x", "price_net": 1}]}
    )
    make_sync(sandbox, sqlite_store, owner="tests/i2d").run()
    assert sqlite_store.deal_link(landed["id"]).deal_id == deal_id  # linked to its deal, not a new one
    assert [d["id"] for d in deals_by_invoice(sandbox).get(landed["id"], [])] == [deal_id]
    later = DealsToInvoices(*clients_for(sandbox), sqlite_store, config(), owner="tests/d2i", stale_claim_minutes=0)
    summary = later.run()
    assert summary["invoices_created"] == 0 and summary["invoices_recovered"] == 1
    assert invoices_by_deal(sandbox)[deal_id] == [next(i for i in invoices_by_deal(sandbox)[deal_id])]
    assert deals(sandbox)[deal_id]["external_ids"][FAKTUROWNIA_INVOICE_KEY] == str(landed["id"])


# No loop, no echo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deals_first", [True, False])
def test_both_directions_interleaved_make_no_loop(
    sandbox: SandboxProcess, sqlite_store: StateStore, deals_first: bool
) -> None:
    cfg = config()
    ids = marked_deals(sandbox, 3)
    order = ["d2i", "i2d", "d2i", "i2d"] if deals_first else ["i2d", "d2i", "i2d", "d2i", "i2d"]
    for step, which in enumerate(order):
        if which == "d2i":
            engine(sandbox, sqlite_store, cfg, owner=f"tests/d2i-{step}").run()
        else:
            make_sync(sandbox, sqlite_store, config=cfg, owner=f"tests/i2d-{step}").run()
    grouped_invoices = invoices_by_deal(sandbox)
    by_invoice = deals_by_invoice(sandbox)
    assert duplicates(by_invoice) == {}
    for deal_id in ids:
        [invoice] = grouped_invoices[deal_id]
        assert [deal["id"] for deal in by_invoice[invoice["id"]]] == [deal_id]  # its deal, updated, not a new one
    invoices_before = len(sandbox.dump("fakturownia")["invoices"])
    deals_before = len(sandbox.dump("sugester")["deals"])
    # Deals made from invoices are never invoiced, however they are marked.
    made_from_invoices = [d for d in deals(sandbox).values() if d["id"] not in ids][:2]
    for deal in made_from_invoices:
        crm_put(sandbox, f"deals/{deal['id']}.json", {"deal": {"status_id": STATUS_ID[INVOICING_STATUS]}})
    sandbox.reset_stats()
    last = engine(sandbox, sqlite_store, cfg, owner="tests/d2i-last").run()
    make_sync(sandbox, sqlite_store, config=cfg, owner="tests/i2d-last").run()
    assert last["invoices_created"] == 0 and last["deals_already_invoiced"] == len(made_from_invoices)
    assert len(sandbox.dump("fakturownia")["invoices"]) == invoices_before
    assert len(sandbox.dump("sugester")["deals"]) == deals_before
    assert sum(sandbox.stats("fakturownia")["writes"].values()) == 0


# Bad input, nothing lost ----------------------------------------------------------------------------------


def test_an_invoice_made_from_a_deal_never_becomes_a_second_deal_after_the_state_db_is_lost(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """A deals → invoices worker killed after Fakturownia made the invoice, then a new empty state DB: the invoice
    is recognised by its `oid` on the CRM's side and joins its deal; nothing is created twice either way."""
    deal_id = marked_deals(sandbox, 1)[0]
    deal = deals(sandbox)[deal_id]
    answer = requests.post(
        f"{sandbox.fakturownia_url}/invoices.json",
        json={
            "api_token": sandbox.fakturownia_token,
            "invoice": {
                "kind": "vat",
                "oid": str(deal_id),
                "oid_unique": "yes",
                "buyer_name": "Przykład Sp. z o.o.",
                "buyer_tax_no": "5261040828",
                "positions": [{"name": deal["name"], "quantity": 1, "total_price_gross": deal["price"], "tax": "23"}],
            },
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    invoice_id = int(answer.json()["id"])
    store = StateStore.open(f"sqlite:///{tmp_path / 'replaced.db'}")  # the worker's state is gone
    try:
        summary = make_sync(sandbox, store, config()).run()
        assert duplicates(deals_by_invoice(sandbox)) == {}
        assert invoice_id not in deals_by_invoice(sandbox) or deals_by_invoice(sandbox)[invoice_id][0]["id"] == deal_id
        assert store.deal_link(invoice_id).deal_id == deal_id, summary
        engine(sandbox, store).run()
        assert len(invoices_by_deal(sandbox)[deal_id]) == 1
        assert duplicates(deals_by_invoice(sandbox)) == {}
        assert not store.open_quarantine(STREAM)
    finally:
        store.close()


def test_bad_deals_are_quarantined_the_rest_invoiced_and_fixed_ones_retried(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    clients = crm_clients(sandbox)
    good = open_deal(sandbox, clients[0]["id"], "Dobry interes")
    no_client = open_deal(sandbox, None, "Bez klienta")
    no_price = open_deal(sandbox, clients[1]["id"], "Bez ceny", price=None)
    zero_price = open_deal(sandbox, clients[1]["id"], "Cena zero", price="0")
    currency = open_deal(sandbox, clients[2]["id"], "Zła waluta", currency="XYZ")
    refused = open_deal(sandbox, clients[3]["id"], "Odrzucony " * 30)  # Fakturownia: name too long (422)
    summary = engine(sandbox, sqlite_store).run()
    reasons = {int(e.record_id): e.reason for e in sqlite_store.open_quarantine(STREAM)}
    assert reasons == {
        no_client: "deal_without_client",
        no_price: "deal_without_price",
        zero_price: "deal_without_price",
        currency: "deal_unknown_currency",
        refused: "fakturownia_rejected",
    }
    assert summary["quarantined_by_reason"] == dict(Counter(reasons.values()))
    assert sorted(invoices_by_deal(sandbox)) == [good]
    entry = next(e for e in sqlite_store.open_quarantine(STREAM) if int(e.record_id) == currency)
    assert entry.payload["id"] == currency and "XYZ" in entry.message

    crm_put(sandbox, f"deals/{currency}.json", {"deal": {"currency": "EUR"}})
    crm_put(sandbox, f"deals/{no_price}.json", {"deal": {"price": "99.90"}})
    crm_put(sandbox, f"deals/{refused}.json", {"deal": {"name": "Odrzucony, poprawiony"}})
    fixed = engine(sandbox, sqlite_store, owner="tests/d2i-2").run()
    assert fixed["quarantine_resolved"] == 3 and fixed["invoices_created"] == 3
    assert invoices_by_deal(sandbox)[currency][0]["currency"] == "EUR"
    assert {int(e.record_id) for e in sqlite_store.open_quarantine(STREAM)} == {no_client, zero_price}


# The DAG ---------------------------------------------------------------------------------------------------


def test_dag_invoices_marked_deals_against_the_sandbox(airflow_env: dict[str, str], tmp_path: Path) -> None:
    tokens = {"fakturownia_token": FAKTUROWNIA_TOKEN, "sugester_token": SUGESTER_TOKEN}
    with SandboxProcess(**SIZE, **tokens) as sandbox:
        ids = marked_deals(sandbox, 2)
        env = {**airflow_env, **connections_env(sandbox, tmp_path / "state.db")}  # the demo config: enabled
        result = dags_test(env, "crm_deals_to_invoices")
        grouped = invoices_by_deal(sandbox)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert sorted(grouped) == sorted(ids)
    assert FAKTUROWNIA_TOKEN not in output and SUGESTER_TOKEN not in output
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    assert store.last_run(STREAM)["summary"]["invoices_created"] == 2
    store.close()


# The worker a test kills -----------------------------------------------------------------------------------


def main() -> None:
    spec = json.loads(sys.argv[1])
    store = StateStore.open(spec["state_url"])
    endpoints = SimpleNamespace(**spec)
    try:
        engine(endpoints, store, owner=spec["owner"]).run()
    except UnconfirmedInvoices:
        pass
    finally:
        store.close()


if __name__ == "__main__":
    main()
