"""Exactly one deal per invoice under faults, retries and a worker killed mid-run (sandbox over HTTP)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from fakturownia_sync.claims import CRM_DEAL, invoice_key
from fakturownia_sync.invoices_to_deals import UnconfirmedWrites
from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.sync_harness import (
    after_claim_window,
    crm_picture,
    deals_by_invoice,
    duplicates,
    make_sync,
    run_like_airflow,
    start_worker,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = {"seed": 5, "clients": 60, "invoices": 400, "crm_clients": 20}


def clean_run(tmp_path: Path) -> tuple[dict[str, Any], int]:
    """The CRM after a fault-free run of the same seed, and how many writes that run made."""
    store = StateStore.open(f"sqlite:///{tmp_path / 'clean.db'}")
    with SandboxProcess(**SIZE) as clean:
        make_sync(clean, store).run()
        picture, writes = crm_picture(clean), _writes(clean)
    store.close()
    return picture, writes


def test_faults_end_in_the_same_crm_state_as_a_clean_run(tmp_path: Path) -> None:
    expected, _ = clean_run(tmp_path)
    store = StateStore.open(f"sqlite:///{tmp_path / 'faulty.db'}")
    with SandboxProcess(**SIZE, error_rate=0.2, drop_rate=0.05, rpm=3000) as faulty:
        summary = run_like_airflow(faulty, store, owner="tests/faulty")
        faults = faulty.stats("sugester")["faults"]
        got = crm_picture(faulty)
    assert faults["error"] > 0 and faults["drop"] > 0 and faults["rate_limited"] > 0
    assert summary["status"] == "success"
    keys = set(expected["deals"]) | set(got["deals"])
    differing = {
        k: (expected["deals"].get(k), got["deals"].get(k))
        for k in keys
        if expected["deals"].get(k) != got["deals"].get(k)
    }
    assert differing == {}, repr(differing)
    assert got == expected


def test_deal_created_but_not_recorded_is_found_not_duplicated(tmp_path: Path) -> None:
    """The crash window itself: the CRM has the deal, our state only the unconfirmed claim."""
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    with SandboxProcess(**SIZE) as sandbox:
        make_sync(sandbox, store).run()
        grouped = deals_by_invoice(sandbox)
        invoice_id = max(grouped)
        # Rewind that invoice to "claimed, deal created, link never committed" (what SIGKILL leaves behind).
        key = invoice_key(invoice_id)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM invoice_deals WHERE invoice_id = ?", (invoice_id,))
            claim_id = store.create_claim(CRM_DEAL, key).id
            conn.exec_driver_sql("DELETE FROM create_claim_keys WHERE claim_id = ?", (claim_id,))
            conn.exec_driver_sql("DELETE FROM create_claims WHERE id = ?", (claim_id,))
        assert store.claim_create(CRM_DEAL, [key], "tests/killed-run").claim is not None
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM sync_cursors")
        summary = make_sync(sandbox, store, owner="tests/killed-run").run()
        assert summary["deals_recovered"] == 1 and summary["deals_created"] == 0
        after = deals_by_invoice(sandbox)
        assert duplicates(after) == {}
        assert store.deal_link(invoice_id).deal_id == grouped[invoice_id][0]["id"]
        assert store.create_claim(CRM_DEAL, key).created_id == grouped[invoice_id][0]["id"]
    store.close()


def _writes(sandbox: SandboxProcess) -> int:
    return sum(sandbox.stats("sugester")["writes"].values())


def test_sigkill_mid_run_then_rerun_leaves_no_duplicate_and_no_gap(tmp_path: Path) -> None:
    expected, clean_writes = clean_run(tmp_path)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    owner = "fakturownia_invoices_to_deals/scheduled__2026-11-25T10:00:00+00:00"
    with SandboxProcess(**SIZE, latency_ms=2) as sandbox:
        for share in (0.15, 0.45, 0.75):  # three kills at different points, as in a flaky worker pool
            kill_at = int(share * clean_writes)
            worker = start_worker(sandbox, state_url, owner, tmp_path / "worker.log")
            deadline = time.monotonic() + 120
            while _writes(sandbox) < kill_at and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(worker.pid, signal.SIGKILL)
            assert worker.wait() == -signal.SIGKILL, "the worker finished before it could be killed"
        store = StateStore.open(state_url)
        pending = store.unconfirmed_creates(CRM_DEAL)
        assert pending, "the kills should leave creates in flight, or this proves nothing"
        # Airflow retries the killed task at once: what the dead worker may still have had in flight is looked
        # up (and linked when found), never sent again a moment later ...
        with contextlib.suppress(UnconfirmedWrites):
            make_sync(sandbox, store, owner=owner).run()
        assert duplicates(deals_by_invoice(sandbox)) == {}
        # ... and a run once those claims may be taken over creates only what is still missing.
        summary = run_like_airflow(sandbox, store, owner=owner, clock=after_claim_window)
        grouped = deals_by_invoice(sandbox)
        got = crm_picture(sandbox)
        store.close()
    assert duplicates(grouped) == {}
    assert summary["status"] == "success"
    assert got == expected


def test_overlapping_runs_do_not_duplicate(tmp_path: Path) -> None:
    """Two different DAG runs at once: claims keep them from both creating a deal or a client."""
    expected, _ = clean_run(tmp_path)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with SandboxProcess(**SIZE, latency_ms=2) as sandbox:
        logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
        workers = [start_worker(sandbox, state_url, f"dag/run-{n}", log) for n, log in zip((1, 2), logs, strict=True)]
        for worker, log in zip(workers, logs, strict=True):
            assert worker.wait(timeout=300) == 0, log.read_text()[-3000:]
        store = StateStore.open(state_url)
        later = make_sync(sandbox, store, owner="dag/run-3").run()  # picks up anything a run deferred
        got = crm_picture(sandbox)
        store.close()
    assert later["status"] == "success"
    assert got == expected
