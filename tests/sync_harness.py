"""Helpers for tests that run the engine against the sandbox over real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from fakturownia_sync.accounts import FAKTUROWNIA, SUGESTER, resolve_account
from fakturownia_sync.config import SyncConfig, load_config
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY
from fakturownia_sync.errors import ApiUnavailable
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.invoices_to_deals import InvoicesToDeals, UnconfirmedWrites
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of
from fakturownia_sync.transport import RetryPolicy
from scripts.airflow_setup import DEMO_CONFIG

ROOT = Path(__file__).resolve().parents[1]

# Quick retries so fault tests finish fast; Retry-After from a 429 is still honoured.
FAST_RETRIES = RetryPolicy(max_attempts=12, backoff_initial=0.01, backoff_max=0.2, read_timeout=20.0)


def demo_config(**overrides: Any) -> SyncConfig:
    return load_config({**DEMO_CONFIG, **overrides})


def clients_for(sandbox: Any, policy: RetryPolicy = FAST_RETRIES) -> tuple[FakturowniaClient, SugesterClient]:
    fakturownia = FakturowniaClient.connect(
        resolve_account(FAKTUROWNIA, token=sandbox.fakturownia_token, host=sandbox.fakturownia_url), policy=policy
    )
    crm = SugesterClient.connect(
        resolve_account(SUGESTER, token=sandbox.sugester_token, host=sandbox.sugester_url), policy=policy
    )
    return fakturownia, crm


def make_sync(
    sandbox: Any, store: StateStore, config: SyncConfig | None = None, owner: str = "tests/run-1"
) -> InvoicesToDeals:
    fakturownia, crm = clients_for(sandbox)
    return InvoicesToDeals(fakturownia, crm, store, config or demo_config(), owner=owner)


def deals_by_invoice(sandbox: Any) -> dict[int, list[dict[str, Any]]]:
    """Every CRM deal grouped by the Fakturownia invoice id it carries (a list, to expose duplicates)."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for deal in sandbox.dump("sugester")["deals"]:
        invoice_id = external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)
        grouped.setdefault(int(invoice_id) if invoice_id else -1, []).append(deal)
    return grouped


def duplicates(grouped: dict[int, list[dict[str, Any]]]) -> dict[int, int]:
    return {invoice_id: len(deals) for invoice_id, deals in grouped.items() if len(deals) > 1}


def crm_picture(sandbox: Any) -> dict[str, Any]:
    """The CRM's content without its own ids, to compare runs that created records in another order."""
    dump = sandbox.dump("sugester")
    clients = {client["id"]: client for client in dump["clients"]}

    def client_key(client_id: Any) -> str:
        client = clients.get(client_id, {})
        return json.dumps([client.get("name"), client.get("tax_no"), client.get("email")], ensure_ascii=False)

    deals = {}
    for deal in dump["deals"]:
        invoice_id = external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)
        deals[invoice_id] = (
            deal.get("name"),
            str(deal.get("price")),
            deal.get("currency"),
            deal.get("department_id"),
            deal.get("url", "").rsplit("/", 1)[-1],
            client_key(deal.get("client_id")),
        )
    client_counts = Counter(client_key(client_id) for client_id in clients)
    return {"deals": deals, "clients": client_counts}


def expected_candidates(sandbox: Any, config: SyncConfig) -> set[int]:
    """Invoices the sync must either turn into a deal or quarantine: sales, of a chosen kind, not cancelled."""
    return {
        invoice["id"]
        for invoice in sandbox.dump("fakturownia")["invoices"]
        if invoice.get("income") is not False
        and invoice.get("kind") in config.invoice_kinds
        and not invoice.get("cancelled")
    }


def run_like_airflow(sandbox: Any, store: StateStore, owner: str, tries: int = 6) -> dict[str, Any]:
    """Run the sync, retrying the whole task on the errors Airflow's task retries exist for."""
    for _ in range(tries):
        try:
            return make_sync(sandbox, store, owner=owner).run()
        except (UnconfirmedWrites, ApiUnavailable):
            continue
    raise AssertionError(f"the sync did not finish in {tries} tries")


def start_worker(
    sandbox: Any, state_url: str, owner: str, log: Path, window: tuple[str, str] | None = None
) -> subprocess.Popen:
    """One sync (a backfill window if given) in a process of its own (tests/engine_runner.py); stderr → `log`."""
    spec = {
        "fakturownia_url": sandbox.fakturownia_url,
        "fakturownia_token": sandbox.fakturownia_token,
        "sugester_url": sandbox.sugester_url,
        "sugester_token": sandbox.sugester_token,
        "state_url": state_url,
        "owner": owner,
    }
    if window is not None:
        spec["window"] = list(window)
    command = [sys.executable, "-m", "tests.engine_runner", json.dumps(spec)]
    with log.open("ab") as stderr:
        return subprocess.Popen(command, cwd=ROOT, stderr=stderr)
