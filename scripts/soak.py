"""`make soak`: a backfill under faults, kills and a moving list ends exactly where a fault-free one does.

The sandbox answers 10% of requests with 5xx, 5% with 429 + `Retry-After` and drops 2% of connections
after applying the write. A worker process runs the backfill (monthly windows, as the DAG's mapped tasks
would) and is SIGKILLed three times mid-run; each time it is started again as Airflow retries a killed task
(same DAG run, so it takes over its own claims). Before each start the invoice list is made to move while it
is read (`--moves`: invoices deleted from, and copies inserted into, the list between two page reads, as a
person tidying drafts would). Both runs end with one incremental sync, the scheduled safety net that picks up
invoices inserted into windows already finished.

At the end the CRM is compared with a fault-free run of the same seed: duplicate deals; for every invoice
that was neither deleted nor inserted, the same deal on the same client; every inserted invoice with a deal
or a quarantine entry (nothing lost); every quarantined invoice with its reason.

    python -m scripts.soak [--invoices 10000] [--kills 3] [--moves 3] [--seed 7] [--workdir DIR]
                           [--json bench-results/soak.json]
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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HISTORY = (date(2023, 10, 1), date(2026, 11, 30))
FAULTS = {"error_rate": 0.10, "rate_limit_rate": 0.05, "drop_rate": 0.02}
MOVE = {"list": "invoices", "after_reads": 1, "delete": 3, "insert": 2}
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
        for attempt in range(8):  # Airflow's task retries; the last two as runs after the claim take-over window
            later = {"clock": _after_claim_window} if attempt >= 6 else {}
            engine = InvoicesToDeals(fakturownia, crm, store, config, owner=f"{OWNER}/{first.isoformat()}", **later)
            try:
                summary = engine.run_window(first, last)
                record_finished_window(request, store, window, summary)
                break
            except (UnconfirmedWrites, ApiUnavailable):
                retries += 1
        else:
            raise RuntimeError(f"window {window} did not finish")
    for _attempt in range(8):  # the scheduled incremental sync: picks up what moved into finished windows
        try:
            InvoicesToDeals(fakturownia, crm, store, config, owner="fakturownia_invoices_to_deals/soak").run()
            break
        except (UnconfirmedWrites, ApiUnavailable):
            retries += 1
    else:
        raise RuntimeError("the incremental sync after the backfill did not finish")
    connections.close()
    return {"task_retries": retries, "transport_retries": fakturownia.transport.retries + crm.transport.retries}


def _after_claim_window() -> datetime:
    """The clock of a run that starts once a killed worker's creates can no longer land (`timing`): only such a
    run sends again a create that got no answer."""
    from fakturownia_sync.timing import STALE_CLAIM_MINUTES

    return datetime.now(UTC) + timedelta(minutes=STALE_CLAIM_MINUTES + 1)


def soak(invoices: int, kills: int, workdir: Path, seed: int = 7, moves: int = 3, log=print) -> dict[str, Any]:
    from fakturownia_sync.config import load_config
    from fakturownia_sync.state import StateStore
    from sandbox.demo_config import DEMO_CONFIG
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
        clean_invoices = {int(invoice["id"]) for invoice in clean.dump("fakturownia")["invoices"]}
        reference = StateStore(spec["state_url"])
        expected_quarantine = {e.record_id: e.reason for e in reference.open_quarantine("invoices_to_deals")}
        reference.close()

    log(f"faulty run: {FAULTS}, {kills} SIGKILLs, {moves} list moves ...")
    with SandboxProcess(**size, **FAULTS) as faulty:
        spec = _spec(faulty, workdir / "faulty.db")
        expected_writes = len(expected["deals"]) + sum(expected["clients"].values())
        mover = ListMover(faulty, moves)
        killed = 0
        for share in [(n + 1) / (kills + 1) for n in range(kills)]:
            worker = _start_worker(spec, workdir / "worker.log")
            deadline = time.monotonic() + 3600
            while _writes(faulty) < share * expected_writes and worker.poll() is None and time.monotonic() < deadline:
                mover.keep_moving()
                time.sleep(0.01)
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait()
                killed += 1
                log(f"  SIGKILL {killed} after {_writes(faulty)} writes")
        worker = _start_worker(spec, workdir / "worker.log")
        while worker.poll() is None:
            mover.keep_moving()
            time.sleep(0.01)
        moved = mover.stop()  # a move still armed now would fire on the inspection reads below
        if worker.returncode != 0:
            raise SystemExit(f"the last worker failed; see {workdir / 'worker.log'}")
        final = json.loads((workdir / "worker.out").read_text())
        got = crm_picture(faulty)
        grouped = deals_by_invoice(faulty)
        final_invoices = faulty.dump("fakturownia")["invoices"]
        stats = {api: faulty.stats(api) for api in ("fakturownia", "sugester")}
        store = StateStore(spec["state_url"])
        entries = store.open_quarantine("invoices_to_deals")
        store.close()

    faults: dict[str, int] = {}
    for api_stats in stats.values():
        for kind, count in api_stats["faults"].items():
            if kind != "latency":
                faults[kind] = faults.get(kind, 0) + count
    present = {int(invoice["id"]) for invoice in final_invoices}
    deleted = {str(i) for i in clean_invoices - present}
    inserted = {str(i) for i in present - clean_invoices}
    kinds = load_config(DEMO_CONFIG).invoice_kinds
    inserted_candidates = {
        str(invoice["id"])
        for invoice in final_invoices
        if str(invoice["id"]) in inserted
        and invoice.get("income") is not False
        and invoice.get("kind") in kinds
        and not invoice.get("cancelled")
    }
    quarantined_ids = {str(e.record_id) for e in entries}
    unmoved_expected = {key: deal for key, deal in expected["deals"].items() if key not in deleted}
    unmoved_got = {key: deal for key, deal in got["deals"].items() if key not in deleted | inserted}
    missing = sorted(set(unmoved_expected) - set(got["deals"]))
    different = sum(1 for key, deal in unmoved_expected.items() if key in got["deals"] and got["deals"][key] != deal)
    duplicate_clients = sum(count - 1 for count in got["clients"].values() if count > 1) - sum(
        count - 1 for count in expected["clients"].values() if count > 1
    )
    unmoved_quarantine = {e.record_id: e.reason for e in entries if str(e.record_id) not in inserted}
    expected_unmoved_quarantine = {k: v for k, v in expected_quarantine.items() if str(k) not in deleted}
    return {
        "invoices": invoices,
        "kills": killed,
        "list_moves": moved,
        "invoices_deleted_while_read": len(deleted),
        "invoices_inserted_while_read": len(inserted),
        "inserted_invoices_lost": len(inserted_candidates - set(got["deals"]) - quarantined_ids),
        "faults_injected": faults,
        "requests": {api: stats[api]["requests"] for api in stats},
        "retries_in_last_worker": final,
        "duplicate_deals": sum(count - 1 for count in duplicates(grouped).values()),
        "missing_deals": len(missing),
        "extra_deals": len(set(unmoved_got) - set(unmoved_expected)),
        "different_deals": different,
        "duplicate_clients": duplicate_clients,
        "quarantined": len(entries),
        "quarantined_without_reason": sum(1 for e in entries if not (e.reason and e.message)),
        "quarantine_same_as_fault_free": unmoved_quarantine == expected_unmoved_quarantine,
        # With no list moves this is the whole CRM; with moves, every deal of an invoice that was not moved.
        "crm_equal_to_fault_free": got == expected
        if not moved
        else (unmoved_got == unmoved_expected and duplicate_clients == 0),
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def _spec(sandbox, state_db: Path) -> dict[str, Any]:
    from fakturownia_sync.connections import SyncEndpoints

    return SyncEndpoints.of(sandbox, f"sqlite:///{state_db}").as_mapping()


class ListMover:
    """Makes the invoice list move between two page reads of the worker, `moves` times in all.

    A move is armed in the sandbox to fire just before the next-but-one invoice-list read, whatever the worker
    is reading then (a window, the incremental sweep, a bounds look-up); once it has fired the next is armed.
    """

    def __init__(self, sandbox: Any, moves: int) -> None:
        self.url = f"{sandbox.url('fakturownia')}/_sandbox/list_moves"
        self.left = moves
        self.armed = False
        self.fired = 0
        self._checked = 0.0

    def _pending(self) -> bool:
        import requests

        return "invoices" in requests.get(self.url, timeout=30).json()

    def _arm(self, body: dict[str, Any]) -> None:
        import requests

        requests.post(self.url, json=body, timeout=30).raise_for_status()

    def keep_moving(self) -> None:
        if time.monotonic() - self._checked < 0.2:
            return
        self._checked = time.monotonic()
        if self.armed and not self._pending():
            self.armed, self.fired = False, self.fired + 1
        if not self.armed and self.left > 0:
            self._arm(MOVE)
            self.armed, self.left = True, self.left - 1

    def stop(self) -> int:
        """Disarm what has not fired (a move that deletes and inserts nothing); returns the moves that fired."""
        if self.armed and self._pending():
            self._arm({**MOVE, "delete": 0, "insert": 0, "after_reads": 1_000_000})
        elif self.armed:
            self.fired += 1
        self.armed = False
        return self.fired


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
    parser.add_argument("--moves", type=int, default=3, help="times the invoice list moves between two page reads")
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
        report = soak(args.invoices, args.kills, args.workdir, seed=args.seed, moves=args.moves)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report = soak(args.invoices, args.kills, Path(tmp), seed=args.seed, moves=args.moves)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    width = max(len(key) for key in report)
    print()
    for key, value in report.items():
        print(f"{key.replace('_', ' ').ljust(width)}  {value}")
    ok = (
        report["duplicate_deals"]
        == report["missing_deals"]
        == report["inserted_invoices_lost"]
        == report["quarantined_without_reason"]
        == 0
    )
    print(f"\n{'PASS' if ok and report['crm_equal_to_fault_free'] else 'FAIL'}: JSON in {args.json}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
