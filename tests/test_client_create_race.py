"""One CRM client per company when two engines in two processes create clients for it at the same moment.

Process A runs the two-way client sync, which reaches each company by its Fakturownia client card; process B
runs the invoices → deals sync over invoices whose buyers have no client card, only the company's NIP (or
only its e-mail). Both create CRM clients through `claims.create_under_claim` on every evidence key of the
company, against one PostgreSQL state DB, so the CRM must end with exactly one client per company, and each
process must have created some of them (the race was real). The sandbox answers every request after a delay,
so creates are in flight while the other process reaches the same company.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import requests

from fakturownia_sync.client_keys import email_key, tax_key
from fakturownia_sync.connections import SyncEndpoints
from fakturownia_sync.state import StateStore
from sandbox.nip import generate as generate_nip
from sandbox.process import SandboxProcess
from tests.clients_harness import make_clients_sync
from tests.sync_harness import ROOT, deals_by_invoice, make_sync

COMPANIES, ROUNDS, LATENCY_MS = 40, 3, 30


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=3, clients=0, invoices=0, crm_clients=0) as running:
        yield running


def post(sandbox: SandboxProcess, path: str, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        f"{sandbox.fakturownia_url}{path}", json={"api_token": sandbox.fakturownia_token, kind: record}, timeout=30
    )
    response.raise_for_status()
    return response.json()


def seed_round(sandbox: SandboxProcess, round_no: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """COMPANIES Fakturownia clients absent from the CRM and one invoice each with no `client_id`: even ones
    name the buyer by NIP only, odd ones by e-mail only. Invoices are made in the reverse order of the cards,
    so the two engines tend to walk the companies from opposite ends and meet in the middle."""
    companies = []
    for n in range(COMPANIES):
        nip, email = generate_nip(rng), f"biuro{n}.r{round_no}@firma{round_no}-{n}.pl"
        card = post(
            sandbox,
            "/clients.json",
            "client",
            {"name": f"Firma {round_no}-{n} sp. z o.o.", "tax_no": nip, "email": email, "post_code": "00-950"},
        )
        companies.append((nip, email, int(card["id"])))
    for n in reversed(range(COMPANIES)):
        nip, email, _card = companies[n]
        buyer = {"buyer_tax_no": nip} if n % 2 == 0 else {"buyer_email": email}
        invoice = {
            "kind": "vat", "issue_date": date.today().isoformat(), "buyer_name": f"Firma {round_no}-{n}",
            "buyer_post_code": "00-950", "buyer_city": "Warszawa", **buyer,
            "positions": [{"name": "Usługa", "quantity": 1, "total_price_gross": "123.00", "tax": 23}],
        }  # fmt: skip
        post(sandbox, "/invoices.json", "invoice", invoice)
    return companies


def race(sandbox: SandboxProcess, state_url: str, round_no: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both engines started in processes of their own at one moment; their summaries."""
    endpoints = SyncEndpoints.of(sandbox, state_url).as_mapping()
    start_at = time.time() + 3.0  # both importing and connecting before the start
    specs = [
        {**endpoints, "owner": f"race/clients-{round_no}", "mode": "clients", "start_at": start_at},
        {**endpoints, "owner": f"race/invoices-{round_no}", "start_at": start_at},
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.engine_runner", json.dumps(spec)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    summaries = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    return summaries[0], summaries[1]


def crm_clients_per_company(sandbox: SandboxProcess) -> tuple[Counter, Counter]:
    clients = sandbox.dump("sugester")["clients"]
    by_nip = Counter(key for c in clients if (key := tax_key(c.get("tax_no"))))
    by_email = Counter(key for c in clients if (key := email_key(c.get("email"))))
    return by_nip, by_email


def test_two_engines_in_two_processes_create_one_crm_client_per_company(
    sandbox: SandboxProcess, postgres_url: str
) -> None:
    StateStore.open(postgres_url).close()
    rng = random.Random(7)
    created_by_clients_sync = created_by_invoices_sync = met = 0
    nip_of: dict[str, str] = {}
    for round_no in range(ROUNDS):
        companies = seed_round(sandbox, round_no, rng)
        sandbox.set_faults(latency_ms=LATENCY_MS)
        clients_summary, invoices_summary = race(sandbox, postgres_url, round_no)
        sandbox.set_faults(latency_ms=0)
        created_by_clients_sync += clients_summary["created_in_crm"]
        created_by_invoices_sync += invoices_summary["clients_created"]
        # Each met the other's create: confirmed (found and linked to) or in flight (deferred to a later run).
        met += clients_summary["creates_recovered"] + clients_summary["deferred"] + invoices_summary["deals_deferred"]
        assert clients_summary["created_in_crm"] + invoices_summary["clients_created"] <= COMPANIES
        assert invoices_summary["quarantined_by_reason"] == {}, invoices_summary
        assert clients_summary["unconfirmed"] == 0 and invoices_summary["deals_unconfirmed"] == 0

        store = StateStore.open(postgres_url)  # later runs settle what was deferred, creating nothing twice
        try:
            make_clients_sync(sandbox, store, owner=f"settle/clients-{round_no}").run()
            make_sync(sandbox, store, owner=f"settle/invoices-{round_no}").run()
            links = {link.fakturownia_client_id: link.crm_client_id for link in store.all_client_links()}
        finally:
            store.close()

        by_nip, by_email = crm_clients_per_company(sandbox)
        for nip, email, card in companies:
            assert by_nip[nip] == 1, f"round {round_no}: {by_nip[nip]} CRM clients for NIP {nip}"
            assert by_email[email] == 1, f"round {round_no}: {by_email[email]} CRM clients for {email}"
            assert card in links
        nip_of.update({key: nip for nip, email, _card in companies for key in (nip, email)})
        crm = {c["id"]: c for c in sandbox.dump("sugester")["clients"]}
        deals = deals_by_invoice(sandbox)
        for invoice in sandbox.dump("fakturownia")["invoices"]:  # every deal is on its own company's client
            named_by = tax_key(invoice.get("buyer_tax_no")) or email_key(invoice.get("buyer_email"))
            deal_client = crm[deals[invoice["id"]][0]["client_id"]]
            assert tax_key(deal_client["tax_no"]) == nip_of[named_by]
    assert sum(by_nip.values()) == COMPANIES * ROUNDS
    assert created_by_clients_sync > 0 and created_by_invoices_sync > 0, (
        f"one engine created every client (client sync {created_by_clients_sync}, "
        f"invoices sync {created_by_invoices_sync}): the race was not exercised"
    )
    assert met > 0
