"""A small soak as a regular test: the same faults and kills as `make soak`, on fewer invoices."""

from __future__ import annotations

from pathlib import Path

from scripts.soak import soak


def test_small_soak_ends_like_a_fault_free_run(tmp_path: Path) -> None:
    report = soak(invoices=400, kills=1, workdir=tmp_path, seed=3, log=lambda _message: None)
    assert report["faults_injected"]["error"] > 0 and report["faults_injected"]["drop"] > 0
    assert report["faults_injected"]["rate_limited"] > 0
    assert report["kills"] == 1
    assert (report["duplicate_deals"], report["missing_deals"], report["extra_deals"]) == (0, 0, 0)
    assert report["duplicate_clients"] == 0 and report["different_deals"] == 0
    assert report["quarantined"] > 0 and report["quarantined_without_reason"] == 0
    assert report["quarantine_same_as_fault_free"] and report["crm_equal_to_fault_free"]
