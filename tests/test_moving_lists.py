"""Lists that move while the sync reads them: records deleted and inserted between two page reads.

Offset paging over a list that shrinks shifts the later pages, and the records that slide back over the
page boundary were never read (issue 8, item 1): these tests make the sandbox delete and insert records
right after the first page was read, and check that nothing that stayed was lost and nothing was doubled.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
import requests

from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.clients_harness import clients_of, make_clients_sync
from tests.sync_harness import deals_by_invoice, demo_config, duplicates, expected_candidates, make_sync

SIZE = {"clients": 80, "invoices": 500, "crm_clients": 30}


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=11, **SIZE) as running:
        yield running


def move_list(sandbox: SandboxProcess, api: str, name: str, *, delete: int, insert: int, after_reads: int = 1) -> None:
    """Arm the sandbox: just before list read number `after_reads + 1`, delete and insert records."""
    body = {"list": name, "after_reads": after_reads, "delete": delete, "insert": insert}
    response = requests.post(f"{sandbox.url(api)}/_sandbox/list_moves", json=body, timeout=10)
    response.raise_for_status()


def iso_day(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None  # the seed holds some malformed dates on purpose


def covered(sandbox: SandboxProcess, store: StateStore) -> tuple[dict[int, list], set[int]]:
    return deals_by_invoice(sandbox), {int(e.record_id) for e in store.open_quarantine("invoices_to_deals")}


def test_invoices_deleted_during_an_incremental_sweep_lose_no_other_invoice(
    sandbox: SandboxProcess, store: StateStore
) -> None:
    config = demo_config()
    before = {invoice["id"] for invoice in sandbox.dump("fakturownia")["invoices"]}
    move_list(sandbox, "fakturownia", "invoices", delete=5, insert=3)

    summary = make_sync(sandbox, store, config).run()

    assert summary["status"] == "success"
    grouped, quarantined = covered(sandbox, store)
    assert duplicates(grouped) == {}
    stayed = expected_candidates(sandbox, config) & before
    assert stayed <= set(grouped) | quarantined
    # The copies inserted during the run are newer than its start: the next run takes them, once.
    make_sync(sandbox, store, config, owner="tests/run-2").run()
    grouped, quarantined = covered(sandbox, store)
    assert duplicates(grouped) == {}
    assert expected_candidates(sandbox, config) <= set(grouped) | quarantined


def test_invoices_deleted_and_inserted_during_a_backfill_window_lose_no_invoice(
    sandbox: SandboxProcess, store: StateStore
) -> None:
    config = demo_config()
    days = [iso_day(i.get("issue_date")) for i in sandbox.dump("fakturownia")["invoices"]]
    low, high = min(d for d in days if d), max(d for d in days if d)
    move_list(sandbox, "fakturownia", "invoices", delete=5, insert=3)

    summary = make_sync(sandbox, store, config).run_window(low, high)

    assert summary["status"] == "success"
    grouped, quarantined = covered(sandbox, store)
    assert duplicates(grouped) == {}
    in_window = {
        invoice["id"]
        for invoice in sandbox.dump("fakturownia")["invoices"]
        if (day := iso_day(invoice.get("issue_date"))) is not None and low <= day <= high
    }
    wanted = expected_candidates(sandbox, config) & in_window
    assert len(wanted) > 300
    assert wanted <= set(grouped) | quarantined  # the inserted copies included: ids ascending, read at the end


@pytest.fixture
def many_clients() -> Iterator[SandboxProcess]:
    """More than a page of clients on both sides, so a deletion on the first page shifts the second."""
    with SandboxProcess(seed=11, clients=250, invoices=300, crm_clients=150) as running:
        yield running


def test_clients_deleted_and_inserted_during_the_read_of_both_client_lists_are_not_missed(
    many_clients: SandboxProcess, store: StateStore
) -> None:
    sandbox = many_clients
    fakturownia_before = set(clients_of(sandbox, "fakturownia"))
    crm_before = set(clients_of(sandbox, "sugester"))
    move_list(sandbox, "fakturownia", "clients", delete=5, insert=3)
    move_list(sandbox, "sugester", "crm_clients", delete=5, insert=3)

    summary = make_clients_sync(sandbox, store).run()

    assert summary["status"] == "success"
    mirrored = {int(record["id"]) for record in store.fakturownia_clients()}
    fakturownia_stayed = set(clients_of(sandbox, "fakturownia")) & fakturownia_before
    assert len(fakturownia_stayed) == len(fakturownia_before) - 5
    assert fakturownia_stayed <= mirrored
    reviewed = {row["crm_client_id"] for row in store.open_client_review() if row["crm_client_id"] is not None}
    crm_now = set(clients_of(sandbox, "sugester"))
    assert len(crm_now & crm_before) == len(crm_before) - 5
    for crm_id in crm_now:  # the ones created during the read too: a CRM pass reads the whole list again
        assert store.crm_client_is_linked(crm_id) or crm_id in reviewed, crm_id
