"""One CRM client per company when two invoices → deals syncs in two processes reach it by disjoint evidence.

Each company has a Fakturownia client card (valid NIP and e-mail) and three invoices: one on the card, one with
no card naming the buyer by NIP only (spelled `PL 526-104-08-28`), one with no card naming it by e-mail only
(spelled ` BIURO@… `, upper case and padded). The NIP-only and e-mail-only buyers share no key of their own;
both resolve to the card, so both are locked and claimed on all of the card's keys (`invoice_clients`), and two
syncs started at one moment against one PostgreSQL state DB make exactly one CRM client per company.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date

import pytest

from fakturownia_sync.state import StateStore
from sandbox.nip import generate as generate_nip
from sandbox.process import SandboxProcess
from tests.sync_harness import deals_by_invoice, make_sync, race_engines, summary_of
from tests.test_client_create_race import post

COMPANIES, ROUNDS, LATENCY_MS = 10, 2, 30


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=11, clients=0, invoices=0, crm_clients=0) as running:
        yield running


def spelled(nip: str) -> str:
    return f"PL {nip[:3]}-{nip[3:6]}-{nip[6:8]}-{nip[8:]}"


def seed_round(sandbox: SandboxProcess, round_no: int, rng: random.Random) -> dict[int, list[int]]:
    """COMPANIES new cards and three invoices each (card; NIP only; e-mail only): invoice ids per card."""
    invoices: dict[int, list[int]] = {}
    for n in range(COMPANIES):
        nip, email = generate_nip(rng), f"biuro{n}.r{round_no}@nowa{round_no}-{n}.pl"
        card = int(
            post(
                sandbox,
                "/clients.json",
                "client",
                {
                    "name": f"Nowa Firma {round_no}-{n} Sp. z o.o.",
                    "tax_no": nip,
                    "email": email,
                    "post_code": "00-950",
                    "city": "Warszawa",
                },
            )["id"]
        )
        buyers = [
            {"client_id": card},
            {"buyer_name": f"NOWA FIRMA {round_no}-{n}", "buyer_tax_no": spelled(nip)},
            {"buyer_name": f"Nowa Firma {round_no}-{n}", "buyer_email": f" {email.upper()} "},
        ]
        invoices[card] = [
            int(
                post(
                    sandbox, "/invoices.json", "invoice",
                    {"kind": "vat", "issue_date": date.today().isoformat(), **buyer,
                     "positions": [{"name": "Usługa", "quantity": 1, "total_price_gross": "123.00", "tax": 23}]},
                )["id"]
            )
            for buyer in buyers
        ]  # fmt: skip
    return invoices


def test_two_invoice_syncs_reaching_a_company_by_nip_only_and_e_mail_only_create_one_crm_client(
    sandbox: SandboxProcess, postgres_url: str
) -> None:
    StateStore.open(postgres_url).close()
    rng = random.Random(13)
    deferred = 0
    for round_no in range(ROUNDS):
        invoices = seed_round(sandbox, round_no, rng)
        sandbox.set_faults(latency_ms=LATENCY_MS)
        owners = [{"owner": f"race/invoices-{round_no}-{n}"} for n in range(2)]
        summaries = [summary_of(finished) for finished in race_engines(sandbox, postgres_url, owners)]
        sandbox.set_faults(latency_ms=0)
        for summary in summaries:
            assert summary["quarantined_by_reason"] == {}, summary
            assert summary["deals_unconfirmed"] == 0
        deferred += sum(summary["deals_deferred"] for summary in summaries)
        store = StateStore.open(postgres_url)  # a later run settles what was deferred, creating nothing twice
        try:
            settle = make_sync(sandbox, store, owner=f"settle/invoices-{round_no}").run()
        finally:
            store.close()
        assert settle["quarantined_by_reason"] == {}, settle

        crm_clients = sandbox.dump("sugester")["clients"]
        assert len(crm_clients) == COMPANIES * (round_no + 1), [(c["id"], c["name"]) for c in crm_clients]
        assert sum(s["clients_created"] for s in summaries) + settle["clients_created"] == COMPANIES
        deals = deals_by_invoice(sandbox)
        client_of_company = {}
        for card, ids in invoices.items():
            clients = {deals[invoice][0]["client_id"] for invoice in ids}
            assert len(clients) == 1, f"round {round_no}, card {card}: its invoices' deals are on clients {clients}"
            client_of_company[card] = clients.pop()
        assert len(set(client_of_company.values())) == COMPANIES
    assert deferred > 0, "the two syncs never met on a record: the race was not exercised"
