"""The invoices sync honours a person's "different" on the client review list, against the sandbox over HTTP.

A Fakturownia client and a CRM client share a valid NIP, one-to-one: by the keys alone they are one company. A
person told them apart. Until the next client sync applies that decision (and after), an invoice of the
Fakturownia client must not put its deal on the CRM client told apart, nor link the two: the invoices sync runs
the same matcher with the same told-apart pairs as the client sync.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date

import pytest

from sandbox.nip import generate as generate_nip
from sandbox.process import SandboxProcess
from tests.clients_harness import copies_per_source, make_clients_sync, post_client
from tests.sync_harness import deals_by_invoice, make_sync
from tests.test_client_create_race import post


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=5, clients=0, invoices=0, crm_clients=0) as running:
        yield running


def invoice_of(sandbox: SandboxProcess, client_id: int) -> int:
    invoice = {
        "kind": "vat", "issue_date": date.today().isoformat(), "client_id": client_id,
        "positions": [{"name": "Usługa", "quantity": 1, "total_price_gross": "123.00", "tax": 23}],
    }  # fmt: skip
    return int(post(sandbox, "/invoices.json", "invoice", invoice)["id"])


def pair_sharing_a_nip(sandbox: SandboxProcess, seed: int) -> tuple[int, int]:
    nip = generate_nip(random.Random(seed))
    f_id = post_client(sandbox, "fakturownia", {"name": "Stolarnia Buk Sp. z o.o.", "tax_no": nip})["id"]
    c_id = post_client(sandbox, "sugester", {"name": "Buk Meble Hurt", "tax_no": nip})["id"]
    return int(f_id), int(c_id)


def test_an_invoice_never_lands_on_a_crm_client_told_apart_before_the_client_sync_applies_it(sandbox, store) -> None:
    f_id, c_id = pair_sharing_a_nip(sandbox, 21)
    decision = store.record_review_decision(f"fakturownia:{f_id}", "different", "jan", f_id, c_id)
    invoice = invoice_of(sandbox, f_id)

    summary = make_sync(sandbox, store).run()
    deal_client = deals_by_invoice(sandbox)[invoice][0]["client_id"]
    assert deal_client != c_id
    link = store.client_link(f_id)
    assert link is not None and (link.crm_client_id, link.evidence) == (deal_client, "created")
    assert summary["clients_created"] == 1 and summary["clients_linked"] == 0
    assert store.client_link_of_crm(c_id) is None

    # The client sync then applies the decision and agrees: the CRM client gets its own Fakturownia copy, and the
    # Fakturownia client is not copied to the CRM a second time.
    clients = make_clients_sync(sandbox, store).run()
    assert clients["review_decisions_applied"] == 1 and clients["created_in_crm"] == 0
    assert store.client_link(f_id).crm_client_id == deal_client
    c_link = store.client_link_of_crm(c_id)
    assert c_link is not None and c_link.fakturownia_client_id != f_id
    crm_copies, fakturownia_copies = copies_per_source(sandbox)
    assert crm_copies == {str(f_id): 1} and fakturownia_copies == {str(c_id): 1}
    assert next(row for row in store.review_decision_audit() if row["id"] == decision)["applied_at"]


def test_a_pending_different_superseded_by_a_later_decision_is_no_longer_in_force(sandbox, store) -> None:
    """Only the subject's latest pending decision counts, as when the client sync applies them: a "different"
    replaced by an "ignore" keeps nothing apart, and the pair is linked by its NIP."""
    f_id, c_id = pair_sharing_a_nip(sandbox, 22)
    store.record_review_decision(f"fakturownia:{f_id}", "different", "jan", f_id, c_id)
    store.record_review_decision(f"fakturownia:{f_id}", "ignore", "anna")
    assert store.told_apart_in_force() == set()
    invoice = invoice_of(sandbox, f_id)

    summary = make_sync(sandbox, store).run()
    assert deals_by_invoice(sandbox)[invoice][0]["client_id"] == c_id
    link = store.client_link(f_id)
    assert link is not None and (link.crm_client_id, link.evidence) == (c_id, "nip")
    assert summary["clients_created"] == 0 and summary["clients_linked"] == 1
