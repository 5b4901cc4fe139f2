"""A quarantined invoice is read again before it is retried; one deleted meanwhile never becomes a deal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select

from fakturownia_sync.state import StateStore
from fakturownia_sync.state.schema import quarantine
from sandbox.process import SandboxProcess
from tests.sync_harness import DEMO_CONFIG, deals_by_invoice, demo_config, make_sync

SIZE = {"clients": 60, "invoices": 300, "crm_clients": 20}


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=11, **SIZE) as running:
        yield running


def entry_of(store: StateStore, record_id: int) -> dict:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(quarantine).where(
                quarantine.c.stream == "invoices_to_deals", quarantine.c.record_id == str(record_id)
            )
        )
        return dict(next(iter(rows))._mapping)


def test_an_invoice_deleted_while_quarantined_is_resolved_as_deleted_and_gets_no_deal(
    sandbox: SandboxProcess, store: StateStore
) -> None:
    pairs = DEMO_CONFIG["department_map"]
    unmapped = pairs[0]["fakturownia_department_id"]
    make_sync(sandbox, store, demo_config(department_map=pairs[1:])).run()
    held = sorted(
        int(e.record_id) for e in store.open_quarantine("invoices_to_deals") if e.reason == "unmapped_department"
    )
    assert len(held) >= 2
    deleted, kept = held[0], held[1]
    response = requests.delete(
        f"{sandbox.fakturownia_url}/invoices/{deleted}.json",
        params={"api_token": sandbox.fakturownia_token},
        timeout=10,
    )
    response.raise_for_status()

    summary = make_sync(sandbox, store, demo_config(), owner="tests/run-2").run()  # the department is mapped now

    grouped = deals_by_invoice(sandbox)
    assert deleted not in grouped
    assert kept in grouped  # re-read and retried: the mapped department lets it through
    entry = entry_of(store, deleted)
    assert entry["resolved_at"] is not None
    assert entry["reason"] == "deleted_in_fakturownia" and "deleted in Fakturownia" in entry["message"]
    assert summary["quarantine_deleted_at_source"] == 1
    assert unmapped is not None
