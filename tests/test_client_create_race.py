"""One CRM client per company when two engines in two processes create clients for it at the same moment.

Process A runs the two-way client sync, which reaches each company by its Fakturownia client card; process B
runs the invoices → deals sync over invoices whose buyers have no client card, only the company's NIP (or
only its e-mail). Both create CRM clients through `claims.create_under_claim` on every evidence key of the
company, against one PostgreSQL state DB, so the CRM must end with exactly one client per company, and each
process must have created some of them (the race was real). The sandbox answers every request after a delay,
so creates are in flight while the other process reaches the same company.

Also here: companies that share only an e-mail (an accountant's) are told apart by their NIPs, in the claims
and in the client sync (a look-alike with another valid NIP is created, with a `possible_duplicate` note),
and migration 0006 carries the old per-key claims over.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from fakturownia_sync.claims import CRM_CLIENT, FAKTUROWNIA_CLIENT, company_keys, create_under_claim
from fakturownia_sync.client_keys import email_key, tax_key
from fakturownia_sync.connections import SyncEndpoints
from fakturownia_sync.state import StateStore
from fakturownia_sync.state.engine import MIGRATIONS, VERSION_TABLE
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


# Companies told apart by their NIPs ------------------------------------------------------------------------

SHARED = "email:ksiegowa@biuro-rachunkowe.pl"  # an accountant's address on the cards of several companies


def test_a_company_sharing_only_an_e_mail_with_a_created_one_is_created_not_given_its_record(store) -> None:
    first = create_under_claim(
        store, CRM_CLIENT, ["fakturownia:1", "nip:5261040828", SHARED], "run/a",
        find_existing=lambda: None, create=lambda: 101,
    )  # fmt: skip
    second = create_under_claim(
        store, CRM_CLIENT, ["fakturownia:2", "nip:1132191233", SHARED], "run/b",
        find_existing=lambda: None, create=lambda: 102,
    )  # fmt: skip
    assert (first.status, first.record_id) == ("created", 101)
    assert (second.status, second.record_id) == ("created", 102)  # not "found" 101: a different NIP
    assert store.create_claim(CRM_CLIENT, "nip:1132191233").keys == {"fakturownia:2", "nip:1132191233"}
    # A buyer with that e-mail and no NIP, or the first company by its NIP, still finds the first create.
    by_email = create_under_claim(store, CRM_CLIENT, [SHARED], "run/c", find_existing=lambda: None, create=lambda: 0)
    by_nip = create_under_claim(
        store, CRM_CLIENT, ["nip:5261040828", SHARED], "run/c", find_existing=lambda: None, create=lambda: 0
    )
    assert (by_email.status, by_email.record_id) == (by_nip.status, by_nip.record_id) == ("found", 101)


def test_another_company_in_flight_on_a_shared_e_mail_neither_defers_nor_is_merged(store) -> None:
    in_flight = store.claim_create(CRM_CLIENT, ["nip:5261040828", SHARED], "run/a").claim
    assert in_flight is not None
    outcome = create_under_claim(
        store, CRM_CLIENT, ["nip:1132191233", SHARED], "run/b",
        find_existing=lambda: None, create=lambda: 7, stale_before=datetime.now(UTC) + timedelta(seconds=1),
    )  # fmt: skip
    assert (outcome.status, outcome.record_id) == ("created", 7)
    assert store.create_claim(CRM_CLIENT, SHARED).id == in_flight.id  # its claim kept all its keys
    assert store.create_claim(CRM_CLIENT, "nip:5261040828").created_id is None


def test_company_keys_are_the_matchers_keys() -> None:
    assert company_keys("fakturownia:7", "PL 526-104-08-28", " Biuro@Example.COM ") == [
        "fakturownia:7",
        "nip:5261040828",
        "email:biuro@example.com",
    ]
    assert company_keys("crm:5", "0000000000", "not an address") == ["crm:5"]  # junk is no evidence


# The per-key claims of migration 0001/0003 move into create_claims -----------------------------------------


def test_migration_0006_moves_the_per_key_claims_into_create_claims(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["version_table"] = VERSION_TABLE
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
        now = datetime(2026, 3, 1, tzinfo=UTC).isoformat()
        conn.execute(
            sa.text(
                "INSERT INTO crm_client_claims VALUES ('fakturownia:7', 70, 'dag/a', :t), "
                "('anonymous:jan kowalski|00950', 71, 'dag/a', :t), ('nip:5261040828', NULL, 'dag/b', :t)"
            ),
            {"t": now},
        )
        conn.execute(sa.text("INSERT INTO fakturownia_client_claims VALUES ('crm:80', 8, 'dag/a', :t)"), {"t": now})
    engine.dispose()
    store = StateStore.open(url)
    try:
        assert store.create_claim(CRM_CLIENT, "fakturownia:7").created_id == 70
        assert store.create_claim(CRM_CLIENT, "buyer:anonymous:jan kowalski|00950").created_id == 71
        pending = store.create_claim(CRM_CLIENT, "nip:5261040828")
        assert pending.created_id is None and pending.owner == "dag/b"
        assert store.create_claim(FAKTUROWNIA_CLIENT, "crm:80").created_id == 8
        assert not {"crm_client_claims", "fakturownia_client_claims"} & set(sa.inspect(store.engine).get_table_names())
    finally:
        store.close()


# A look-alike told apart by its NIP is created, with a note --------------------------------------------------


def post_crm_client(sandbox: SandboxProcess, record: dict[str, Any]) -> int:
    response = requests.post(
        f"{sandbox.sugester_url}/app/clients.json",
        json={"api_token": sandbox.sugester_token, "client": record},
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json()["id"])


def test_a_look_alike_with_another_valid_nip_is_created_with_a_possible_duplicate_note(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    accountant = "ksiegowa@biuro-rachunkowe.pl"
    crm_id = post_crm_client(
        sandbox,
        {"name": "Hydro-Tech Sp. z o.o.", "tax_no": "5261040828", "email": accountant, "post_code": "30-001"},
    )
    same_name = post(
        sandbox, "/clients.json", "client",
        {"name": "HYDRO-TECH spółka z ograniczoną odpowiedzialnością", "tax_no": "1132191233", "post_code": "30-001"},
    )["id"]  # fmt: skip
    shared_mail = post(
        sandbox, "/clients.json", "client",
        {"name": "Piekarnia Zbożowa", "tax_no": "7740001454", "email": accountant, "post_code": "80-200"},
    )["id"]  # fmt: skip
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        summary = make_clients_sync(sandbox, store).run()
        links = {link.fakturownia_client_id: link for link in store.all_client_links()}
        review = {row["subject"]: row for row in store.open_client_review()}
    finally:
        store.close()
    crm = {c["id"]: c for c in sandbox.dump("sugester")["clients"]}
    assert summary["status"] == "success" and summary["created_in_crm"] == 2
    for f_id, nip in ((same_name, "1132191233"), (shared_mail, "7740001454")):
        link = links[f_id]  # created, not held
        assert link.evidence == "created" and link.crm_client_id != crm_id
        assert tax_key(crm[link.crm_client_id]["tax_no"]) == nip
        note = review[f"fakturownia:{f_id}"]
        assert note["reason"] == "possible_duplicate" and note["message"].startswith("note:")
        assert crm_id in {suggestion["id"] for suggestion in note["suggestions"]}
    assert f"crm:{crm_id}" not in review or review[f"crm:{crm_id}"]["reason"] == "possible_duplicate"
