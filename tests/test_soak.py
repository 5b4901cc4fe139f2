"""A small soak as a regular test: the same faults, kills and list moves as `make soak`, on fewer invoices.

The soak runs as the command a person runs (`python -m scripts.soak`), in a process of its own, and is
judged by the JSON report it writes; the test does not import the script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_small_soak_ends_like_a_fault_free_run(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    command = [sys.executable, "-m", "scripts.soak", "--invoices", "400", "--kills", "1", "--moves", "2", "--seed", "3"]
    command += ["--workdir", str(tmp_path / "work"), "--json", str(report_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert report_path.exists(), f"the soak wrote no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads(report_path.read_text())
    assert report["faults_injected"]["error"] > 0 and report["faults_injected"]["drop"] > 0
    assert report["faults_injected"]["rate_limited"] > 0
    assert report["kills"] == 1
    assert report["list_moves"] >= 1 and report["invoices_deleted_while_read"] > 0
    assert report["invoices_inserted_while_read"] > 0 and report["inserted_invoices_lost"] == 0
    assert (report["duplicate_deals"], report["missing_deals"], report["extra_deals"]) == (0, 0, 0)
    assert report["duplicate_clients"] == 0 and report["different_deals"] == 0
    assert report["quarantined"] > 0 and report["quarantined_without_reason"] == 0
    assert report["quarantine_same_as_fault_free"] and report["crm_equal_to_fault_free"]
    assert done.returncode == 0, done.stdout[-3000:]
