"""One deal per invoice when two invoices → deals syncs in two processes create deals for the same invoices.

Both processes read the same invoices in the same order against one PostgreSQL state DB, and each deal create
goes through `claims.create_under_claim` (target `crm_deal`, key `invoice:<id>`), the routine every create of the
sync uses. The sandbox answers every request after a delay, so one process's creates are in flight while the
other reaches the same invoices. In the second test the CRM also loses some answers after applying the create:
the claims those leave behind are met by the other process (deferred, never created again) and settled by a
run after the take-over window, which finds the deals instead of making them twice. Either way the CRM must end
as a single fault-free run leaves it, with every deal linked in the state DB.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from fakturownia_sync.claims import CRM_DEAL
from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.sync_harness import (
    after_claim_window,
    crm_picture,
    deals_by_invoice,
    duplicates,
    make_sync,
    race_engines,
    run_like_airflow,
    summary_of,
)

SIZE = {"seed": 31, "clients": 40, "invoices": 240, "crm_clients": 15}
LATENCY_MS = 15


def clean_picture(tmp_path: Path) -> dict[str, Any]:
    """The CRM after one fault-free run of the same seed in one process."""
    store = StateStore.open(f"sqlite:///{tmp_path / 'clean.db'}")
    with SandboxProcess(**SIZE) as clean:
        make_sync(clean, store).run()
        picture = crm_picture(clean)
    store.close()
    return picture


def race(sandbox: SandboxProcess, state_url: str, tag: str) -> list[subprocess.CompletedProcess[str]]:
    """Two syncs of the same invoices started in processes of their own at one moment."""
    return race_engines(sandbox, state_url, [{"owner": f"race/{tag}-{side}"} for side in ("a", "b")])


def assert_one_linked_deal_per_invoice(sandbox: SandboxProcess, state_url: str) -> None:
    grouped = deals_by_invoice(sandbox)
    assert duplicates(grouped) == {}
    store = StateStore.open(state_url)
    try:
        links = store.deal_links(grouped)
        assert store.unconfirmed_creates(CRM_DEAL) == []
    finally:
        store.close()
    assert {invoice_id: link.deal_id for invoice_id, link in links.items()} == {
        invoice_id: deals[0]["id"] for invoice_id, deals in grouped.items()
    }


def test_two_processes_racing_on_the_same_invoices_make_one_deal_each(tmp_path: Path, postgres_url: str) -> None:
    expected = clean_picture(tmp_path)
    StateStore.open(postgres_url).close()  # migrated once, before the race
    with SandboxProcess(**SIZE, latency_ms=LATENCY_MS) as sandbox:
        summaries = [summary_of(finished) for finished in race(sandbox, postgres_url, "clean")]
        sandbox.set_faults(latency_ms=0)
        store = StateStore.open(postgres_url)
        try:
            later = make_sync(sandbox, store, owner="race/clean-later").run()  # what either of them deferred
        finally:
            store.close()
        assert later["status"] == "success"
        assert all(summary["deals_created"] > 0 for summary in summaries), "one process made every deal: no race"
        assert sum(summary["deals_deferred"] for summary in summaries) > 0, "the processes never met on a create"
        made = sum(summary["deals_created"] for summary in [*summaries, later])
        assert made == len(deals_by_invoice(sandbox))
        assert_one_linked_deal_per_invoice(sandbox, postgres_url)
        got = crm_picture(sandbox)
    assert got == expected


def test_two_racing_processes_that_lose_answers_still_make_one_deal_each(tmp_path: Path, postgres_url: str) -> None:
    expected = clean_picture(tmp_path)
    StateStore.open(postgres_url).close()
    with SandboxProcess(**SIZE, latency_ms=LATENCY_MS, drop_rate=0.04) as sandbox:
        for finished in race(sandbox, postgres_url, "lossy"):  # a run left with creates it cannot confirm fails
            assert finished.returncode == 0 or "UnconfirmedWrites" in finished.stderr, finished.stderr[-3000:]
        assert sandbox.stats("sugester")["faults"]["drop"] > 0
        assert duplicates(deals_by_invoice(sandbox)) == {}  # nothing was sent twice while it might still land
        sandbox.set_faults(latency_ms=0, drop_rate=0)
        store = StateStore.open(postgres_url)
        try:  # a run once every claim may be taken over: finds what landed, creates only what is missing
            summary = run_like_airflow(sandbox, store, owner="race/lossy-later", clock=after_claim_window)
        finally:
            store.close()
        assert summary["status"] == "success"
        assert_one_linked_deal_per_invoice(sandbox, postgres_url)
        got = crm_picture(sandbox)
    assert got == expected
