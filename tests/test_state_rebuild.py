"""A new or lost state DB: the links are rebuilt from the CRM's external ids and nothing is written twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.sync_harness import deals_by_invoice, demo_config, duplicates, make_sync

SIZE = {"clients": 60, "invoices": 300, "crm_clients": 20}
# Anonymous buyers held back: a CRM client made from a document (`per_buyer`) carries no external id to be
# found again by, which is the buyer resolution's concern, not the deal links' this test protects.
CONFIG = {"anonymous_buyers": {"policy": "quarantine"}}


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=17, **SIZE) as running:
        yield running


def test_a_run_on_an_empty_state_db_rebuilds_deal_links_and_writes_nothing_to_the_crm(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    first = StateStore.open(f"sqlite:///{tmp_path / 'first.db'}")
    created = make_sync(sandbox, first, demo_config(**CONFIG)).run()["deals_created"]
    first.close()
    assert created > 100

    sandbox.reset_stats()
    replaced = StateStore.open(f"sqlite:///{tmp_path / 'replaced.db'}")
    try:
        summary = make_sync(sandbox, replaced, demo_config(**CONFIG), owner="tests/run-2").run()
        crm_stats = sandbox.stats("sugester")
        assert crm_stats["writes"] == {}
        assert sandbox.stats("fakturownia")["writes"] == {}
        assert summary["deals_created"] == 0 and summary["deals_updated"] == 0
        assert summary["deal_links_rebuilt"] == created
        # one bounded scan of the deals, not one per invoice
        deal_list_reads = crm_stats["by_endpoint"].get("GET /app/deals.json", 0)
        assert 0 < deal_list_reads <= created // 100 + 2
        assert duplicates(deals_by_invoice(sandbox)) == {}
        assert replaced.count_deal_links() == created

        again = make_sync(
            sandbox, replaced, demo_config(**CONFIG), owner="tests/run-3"
        ).run()  # links exist now: no scan at all
        assert again["deal_links_rebuilt"] == 0
    finally:
        replaced.close()
