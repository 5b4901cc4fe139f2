"""`make soak`: a backfill under faults and kills ends exactly where a fault-free one does.

The sandbox answers 10% of requests with 5xx, 5% with 429 + `Retry-After` and drops 2% of connections
after applying the write. A worker process runs the backfill (monthly windows, as the DAG's mapped tasks
would) and is SIGKILLed three times mid-run; each time it is started again as Airflow retries a killed task
(same DAG run, so it takes over its own claims). At the end the CRM is compared with a fault-free run of
the same seed: duplicates, missing deals, and every quarantined invoice with its reason.

    python -m scripts.soak [--invoices 10000] [--kills 3] [--seed 7] [--workdir DIR] [--json bench-results/soak.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HISTORY = (date(2023, 10, 1), date(2026, 11, 30))
FAULTS = {"error_rate": 0.10, "rate_limit_rate": 0.05, "drop_rate": 0.02}
OWNER = "fakturownia_backfill/manual__soak"


def run_backfill(spec: dict[str, Any]) -> dict[str, Any]:
    """The worker: every unfinished window of the history, in order, like the DAG's mapped tasks."""
    from fakturownia_sync.backfill import BackfillRequest, plan_invoice_windows, record_finished_window
    from fakturownia_sync.config import load_config
    from fakturownia_sync.connections import SyncEndpoints, connect
    from fakturownia_sync.errors import ApiUnavailable
    from fakturownia_sync.invoices_to_deals import InvoicesToDeals, UnconfirmedWrites
    from fakturownia_sync.transport import RetryPolicy
    from sandbox.demo_config import DEMO_CONFIG

    config = load_config({**DEMO_CONFIG, "crm_write_concurrency": 8})
    connections = connect(SyncEndpoints.from_mapping(spec), policy=RetryPolicy(backoff_initial=0.05, backoff_max=1.0))
    fakturownia, crm, store = connections.fakturownia, connections.crm, connections.store
    params = {"date_from": HISTORY[0].isoformat(), "date_to": HISTORY[1].isoformat(), "window": "month"}
    request = BackfillRequest.from_params(params, config, HISTORY[1])
    windows, _skipped = plan_invoice_windows(request, store)
    retries = 0
    for window in windows:
        first, last = date.fromisoformat(window["date_from"]), date.fromisoformat(window["date_to"])
        for _attempt in range(8):  # Airflow's task retries
            engine = InvoicesToDeals(fakturownia, crm, store, config, owner=f"{OWNER}/{first.isoformat()}")
            try:
                summary = engine.run_window(first, last)
                record_finished_window(request, store, window, summary)
                break
            except (UnconfirmedWrites, ApiUnavailable):
                retries += 1
        else:
            raise RuntimeError(f"window {window} did not finish")
    connections.close()
    return {"task_retries": retries, "transport_retries": fakturownia.transport.retries + crm.transport.retries}


def soak(invoices: int, kills: int, workdir: Path, seed: int = 7, log=print) -> dict[str, Any]:
    from fakturownia_sync.state import StateStore
    from sandbox.inspection import crm_picture, deals_by_invoice, duplicates
    from sandbox.process import SandboxProcess

    size = {
        "seed": seed,
        "invoices": invoices,
        "clients": max(20, invoices // 10),
        "crm_clients": max(5, invoices // 40),
    }
    started = time.monotonic()
    log(f"fault-free reference run over {invoices} invoices ...")
    with SandboxProcess(**size) as clean:
        spec = _spec(clean, workdir / "clean.db")
        run_backfill(spec)
        expected = crm_picture(clean)
        reference = StateStore(spec["state_url"])
        expected_quarantine = {e.record_id: e.reason for e in reference.open_quarantine("invoices_to_deals")}
        reference.close()

    log(f"faulty run: {FAULTS}, {kills} SIGKILLs ...")
    with SandboxProcess(**size, **FAULTS) as faulty:
        spec = _spec(faulty, workdir / "faulty.db")
        expected_writes = len(expected["deals"]) + sum(expected["clients"].values())
        killed = 0
        for share in [(n + 1) / (kills + 1) for n in range(kills)]:
            worker = _start_worker(spec, workdir / "worker.log")
            deadline = time.monotonic() + 3600
            while _writes(faulty) < share * expected_writes and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait()
                killed += 1
                log(f"  SIGKILL {killed} after {_writes(faulty)} writes")
        worker = _start_worker(spec, workdir / "worker.log")
        if worker.wait() != 0:
            raise SystemExit(f"the last worker failed; see {workdir / 'worker.log'}")
        final = json.loads((workdir / "worker.out").read_text())
        got = crm_picture(faulty)
        grouped = deals_by_invoice(faulty)
        stats = {api: faulty.stats(api) for api in ("fakturownia", "sugester")}
        store = StateStore(spec["state_url"])
        entries = store.open_quarantine("invoices_to_deals")
        store.close()

    faults: dict[str, int] = {}
    for api_stats in stats.values():
        for kind, count in api_stats["faults"].items():
            if kind != "latency":
                faults[kind] = faults.get(kind, 0) + count
    missing = sorted(set(expected["deals"]) - set(got["deals"]))
    return {
        "invoices": invoices,
        "kills": killed,
        "faults_injected": faults,
        "requests": {api: stats[api]["requests"] for api in stats},
        "retries_in_last_worker": final,
        "duplicate_deals": sum(count - 1 for count in duplicates(grouped).values()),
        "missing_deals": len(missing),
        "extra_deals": len(set(got["deals"]) - set(expected["deals"])),
        "different_deals": sum(
            1 for key in expected["deals"] if key in got["deals"] and got["deals"][key] != expected["deals"][key]
        ),
        "duplicate_clients": sum(count - 1 for count in got["clients"].values() if count > 1)
        - sum(count - 1 for count in expected["clients"].values() if count > 1),
        "quarantined": len(entries),
        "quarantined_without_reason": sum(1 for e in entries if not (e.reason and e.message)),
        "quarantine_same_as_fault_free": {e.record_id: e.reason for e in entries} == expected_quarantine,
        "crm_equal_to_fault_free": got == expected,
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def _spec(sandbox, state_db: Path) -> dict[str, Any]:
    from fakturownia_sync.connections import SyncEndpoints

    return SyncEndpoints.of(sandbox, f"sqlite:///{state_db}").as_mapping()


def _writes(sandbox) -> int:
    return sum(sandbox.stats("sugester")["writes"].values())


def _start_worker(spec: dict[str, Any], log: Path) -> subprocess.Popen:
    out = log.with_name("worker.out")
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "scripts.soak", "--worker", json.dumps({**spec, "out": str(out)})],
            cwd=ROOT,
            stderr=stderr,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7, help="seed of the sandbox's data")
    parser.add_argument("--workdir", type=Path, help="keep the state DBs and the worker log here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "soak.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        Path(spec["out"]).write_text(json.dumps(run_backfill(spec)))
        return
    logging.basicConfig(level=logging.ERROR)  # the reference run's per-record warnings are not the point here
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = soak(args.invoices, args.kills, args.workdir, seed=args.seed)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report = soak(args.invoices, args.kills, Path(tmp), seed=args.seed)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    width = max(len(key) for key in report)
    print()
    for key, value in report.items():
        print(f"{key.replace('_', ' ').ljust(width)}  {value}")
    ok = report["duplicate_deals"] == report["missing_deals"] == report["quarantined_without_reason"] == 0
    print(f"\n{'PASS' if ok and report['crm_equal_to_fault_free'] else 'FAIL'}: JSON in {args.json}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
