"""`make scale`: the product on CeleryExecutor with two workers, proven with real processes on this machine.

Starts the topology of `scripts.topology` (PostgreSQL metadata DB, the local Redis as broker, api-server,
scheduler, dag-processor, triggerer, Celery workers, the sandbox at 150 ms latency, a PostgreSQL state DB),
then backfills the sandbox's invoices (`fakturownia_backfill`, monthly windows over the sandbox's three years,
triggered through the REST API) while the deployment lives on: the two scheduled DAGs are unpaused with
their cursors at the start (a live deployment's incremental runs, not a second sweep of the history), a new
invoice is issued every 2 s through the Fakturownia API, and, since a backfill is shorter than the 15-minute
schedule, a run of each scheduled DAG is triggered whenever its previous one has finished. Once the backfill
is done, one last run of each (the next tick) settles what was issued meanwhile.

Then it checks, from the outside, and prints:
- deals: none duplicated (two deals naming one invoice), none missing (an invoice owed a deal with neither a
  deal nor a quarantine entry), none on a CRM client that does not exist;
- clients: none made twice (external ids or anonymous-buyer markers named twice), none missing (a client of
  either side neither linked to an existing client of the other side nor under review);
- pools: the most task slots in use at once per pool, from every try's start and end times (REST API), never
  above the pool's slots;
- workers: the task instances of each worker (their `hostname`), both used;
- throughput: the backfill run's wall time and invoices a minute, with two workers and then, on a fresh
  sandbox, state DB and metadata DB, with one (`--workers 2 1`, the default).

    python -m scripts.scale [--invoices 10000] [--workers 2 1] [--latency-ms 150] [--window month]
                            [--sync-every 60] [--issue-every 2] [--workdir DIR] [--json bench-results/scale.json]

Exit status 1 when a check fails. Logs of every process stay in the work directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.topology import SCHEDULED_DAGS, Topology

ROOT = Path(__file__).resolve().parent.parent
BACKFILL = "fakturownia_backfill"
# The sandbox issues its invoices over the three years to November 2026 (see tests/test_backfill.py).
CONF = {"date_from": "2023-10-01", "date_to": "2026-11-30", "window": "month"}
TERMINAL = {"success", "failed"}


def _time(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def drive(
    topology: Topology,
    *,
    window: str = "month",
    sync_every: float = 60,
    issue_every: float = 2,
    timeout: float = 3600,
    log=print,
) -> dict[str, Any]:
    """Run the backfill (windows of `window`) next to the scheduled syncs while new invoices are issued (one
    every `issue_every` seconds); returns the backfill run, the syncs' runs and the ids of the new invoices."""
    go_live(topology)
    issuer = InvoiceIssuer(topology.sandbox, issue_every)
    for dag_id in (*SCHEDULED_DAGS, BACKFILL):
        topology.set_paused(dag_id, False)
    run_id = topology.trigger(BACKFILL, {**CONF, "window": window})
    log(f"  backfill {run_id} triggered; scheduled DAGs unpaused; a new invoice every {issue_every:g} s")
    deadline = time.monotonic() + timeout
    last_sync = time.monotonic()
    triggered = Counter()
    issuer.start()
    try:
        while True:
            run = topology.dag_run(BACKFILL, run_id)
            if run["state"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the backfill did not finish within {timeout:.0f} s")
            if time.monotonic() - last_sync >= sync_every:
                last_sync = time.monotonic()
                for dag_id in SCHEDULED_DAGS:
                    if not _active_runs(topology, dag_id):
                        topology.trigger(dag_id)
                        triggered[dag_id] += 1
            time.sleep(3)
    finally:
        issued = issuer.stop()
    log(f"  backfill {run['state']}, {len(issued)} invoices issued meanwhile; the next tick of each scheduled DAG ...")
    for dag_id in SCHEDULED_DAGS:
        _wait_idle(topology, dag_id, deadline)
        topology.trigger(dag_id)
        triggered[dag_id] += 1
    for dag_id in SCHEDULED_DAGS:
        _wait_idle(topology, dag_id, deadline)
        topology.set_paused(dag_id, True)
    syncs = {dag_id: topology.dag_runs(dag_id) for dag_id in SCHEDULED_DAGS}
    return {"backfill": run, "syncs": syncs, "triggered": dict(triggered), "issued": issued}


def go_live(topology: Topology) -> None:
    """The deployment has been syncing invoices before the backfill: the invoices sync's cursor stands at
    now, so its runs are a live deployment's incremental ones (the invoices issued meanwhile), not a second
    sweep of the history, which is the backfill's job. The clients sync keeps no cursor: its first run is
    the full one every deployment starts with (an incremental run relies on the mirror of both client bases
    that only a full run leaves in the state DB)."""
    from fakturownia_sync.invoices_to_deals import STREAM
    from fakturownia_sync.state import StateStore

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the state DB's migrations, step by step
    store = StateStore.open(topology.state_url())
    try:
        store.set_cursor(STREAM, datetime.now(UTC))
    finally:
        store.close()


class InvoiceIssuer:
    """Issues a sales invoice to an existing client card every `every` seconds, through the Fakturownia API,
    as salespeople do while the backfill runs: dated today, so both the backfill's last window and the
    scheduled sync meet it."""

    def __init__(self, sandbox: Any, every: float) -> None:
        import requests

        self.url = f"{sandbox.url('fakturownia')}/invoices.json"
        self.token = sandbox.token("fakturownia")
        self.every = every
        self.clients = [client["id"] for client in sandbox.dump("fakturownia")["clients"]]
        self.issued: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invoice-issuer", daemon=True)
        self._session = requests.Session()

    def start(self) -> None:
        if self.every > 0 and self.clients:
            self._thread.start()

    def _run(self) -> None:
        rng = random.Random(7)
        departments = (11, 12, 13)  # the sandbox's Fakturownia departments (DEMO_CONFIG's department_map)
        while not self._stop.wait(self.every):
            invoice = {
                "client_id": rng.choice(self.clients),
                "department_id": rng.choice(departments),
                "positions": [
                    {"name": "Wdrożenie i szkolenie", "quantity": 1, "tax": 23,
                     "total_price_gross": f"{rng.randint(100, 20_000)}.00"}
                ],
            }  # fmt: skip
            try:
                answer = self._session.post(self.url, json={"api_token": self.token, "invoice": invoice}, timeout=30)
                answer.raise_for_status()
                self.issued.append(int(answer.json()["id"]))
            except Exception:  # the sandbox busy for a moment: the next tick issues the next one
                continue

    def stop(self) -> list[int]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
        self._session.close()
        return list(self.issued)


def _active_runs(topology: Topology, dag_id: str) -> list[dict[str, Any]]:
    return [run for run in topology.dag_runs(dag_id) if run["state"] not in TERMINAL]


def _wait_idle(topology: Topology, dag_id: str, deadline: float) -> None:
    while _active_runs(topology, dag_id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} still running at the deadline")
        time.sleep(3)


def check(topology: Topology, driven: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """What the run left, judged from the outside and against `reference` (`reference_backfill`: the same
    history backfilled by the engine alone, window after window): every figure the table and the test need.

    Deals: a deal of the reference that the run lacks is missing, a deal it has differently (client, amount,
    department, ...) is different, and the run must hold the invoices the reference holds; each invoice issued
    during the run has a deal or a quarantine entry that names a problem of its data. Clients: none named
    twice by the external ids or markers the sync writes, no more and no fewer on either side than in the
    reference (issued invoices go to existing cards), and every client linked or under review."""
    from fakturownia_sync.client_decisions import made_for_an_anonymous_buyer
    from fakturownia_sync.config import load_config
    from fakturownia_sync.state import StateStore
    from fakturownia_sync.sugester_client import external_ids_of
    from sandbox.demo_config import DEMO_CONFIG
    from sandbox.inspection import FAKTUROWNIA_INVOICE_KEY, client_copies, crm_picture, invoices_owed_a_deal

    sandbox = topology.sandbox
    issued = {str(i) for i in driven["issued"]}
    f_dump, c_dump = sandbox.dump("fakturownia"), sandbox.dump("sugester")
    store = StateStore(topology.state_url())
    try:
        quarantined = {str(entry.record_id): entry.reason for entry in store.open_quarantine("invoices_to_deals")}
        reviewed = {row["subject"] for row in store.open_client_review()}
        links = store.all_client_links()
    finally:
        store.close()

    # Deals
    deals_of: dict[str, int] = Counter()
    crm_ids = {client["id"] for client in c_dump["clients"]}
    orphan_deals = 0
    for deal in c_dump["deals"]:
        invoice_id = external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)
        if invoice_id:
            deals_of[str(invoice_id)] += 1
            if deal.get("client_id") not in crm_ids:
                orphan_deals += 1
    seeded = _plain({str(key): deal for key, deal in crm_picture(sandbox)["deals"].items() if str(key) not in issued})
    expected = reference["deals"]
    owed = {str(i) for i in invoices_owed_a_deal(f_dump, load_config(topology.config or DEMO_CONFIG).invoice_kinds)}
    # For an invoice issued meanwhile, a quarantine entry accounts for it only when it names a problem of the
    # invoice's data; an unexpected error is a deal the sync failed to make.
    accounted = {invoice_id for invoice_id, reason in quarantined.items() if reason != "unexpected_error"}
    missing_deals = sorted(set(expected) - set(seeded)) + sorted((owed & issued) - set(deals_of) - accounted)
    # The same invoices must be held; the reason may name the same conflict as seen at another moment (a link
    # made by a client sync running alongside is met as `ambiguous_client`, found later as `duplicate_of_linked`).
    seeded_quarantine = {key: reason for key, reason in quarantined.items() if key not in issued}
    other_reason = Counter(
        f"{reference['quarantine'][key]} -> {reason}"
        for key, reason in seeded_quarantine.items()
        if key in reference["quarantine"] and reference["quarantine"][key] != reason
    )

    # Clients
    copies = client_copies(f_dump, c_dump)
    named_twice = sum(count - 1 for counter in copies.values() for count in counter.values() if count > 1)
    extra = {
        "fakturownia": len(f_dump["clients"]) - reference["fakturownia_clients"],
        "crm": len(c_dump["clients"]) - reference["crm_clients"],
    }
    f_ids = {client["id"] for client in f_dump["clients"]}
    linked_f = {link.fakturownia_client_id for link in links if link.crm_client_id in crm_ids}
    linked_c = {link.crm_client_id for link in links if link.fakturownia_client_id in f_ids}
    missing_f = [i for i in f_ids if i not in linked_f and f"fakturownia:{i}" not in reviewed]
    missing_c = [
        client["id"]
        for client in c_dump["clients"]
        if client["id"] not in linked_c
        and f"crm:{client['id']}" not in reviewed
        and not made_for_an_anonymous_buyer(client.get("note"))
    ]

    # Pools, from every try of every task instance of the run's time
    tis = topology.task_instances()
    tries = [*tis]
    for ti in tis:
        if (ti.get("try_number") or 0) > 1:
            tries += topology.earlier_tries(ti)
    pools = topology.pools()
    peak = peak_slots(tries)
    backfill_tis = [ti for ti in tis if ti["dag_run_id"] == driven["backfill"]["dag_run_id"] and ti["start_date"]]
    hosts = Counter(ti["hostname"] for ti in tries if ti.get("start_date") and ti.get("hostname"))
    backfill_hosts = Counter(ti["hostname"] for ti in backfill_tis if ti.get("hostname"))

    run = driven["backfill"]
    wall = _time(run["end_date"]) - _time(run["start_date"])
    start, end = _time(run["start_date"]), _time(run["end_date"])
    overlapping = {
        dag_id: sum(1 for sync in runs if _overlaps(sync, start, end)) for dag_id, runs in driven["syncs"].items()
    }
    return {
        "workers": topology.workers,
        "invoices": len(f_dump["invoices"]) - len(issued),
        "invoices_issued_meanwhile": len(issued),
        "issued_with_a_deal": len(issued & set(deals_of)),
        "backfill_state": run["state"],
        "sync_runs": {dag_id: Counter(r["state"] for r in runs) for dag_id, runs in driven["syncs"].items()},
        "sync_runs_during_backfill": overlapping,
        "deals": sum(deals_of.values()),
        "reference_deals": len(expected),
        "invoices_owed_a_deal": len(owed),
        "quarantined": dict(Counter(quarantined.values())),
        "reference_quarantined": dict(Counter(reference["quarantine"].values())),
        "quarantine_as_reference": set(seeded_quarantine) == set(reference["quarantine"]),
        "quarantine_other_reason": dict(other_reason),
        "duplicate_deals": sum(count - 1 for count in deals_of.values() if count > 1),
        "missing_deals": len(missing_deals),
        "different_deals": sum(1 for key, deal in expected.items() if key in seeded and seeded[key] != deal),
        "extra_deals": len(set(seeded) - set(expected)),
        "deals_on_missing_clients": orphan_deals,
        "crm_clients": len(c_dump["clients"]),
        "fakturownia_clients": len(f_dump["clients"]),
        "clients_under_review": len(reviewed),
        "duplicate_clients": named_twice + sum(max(0, n) for n in extra.values()),
        "missing_clients": len(missing_f) + len(missing_c) + sum(max(0, -n) for n in extra.values()),
        "pool_slots": {name: pools[name] for name in peak if name in pools},
        "pool_peak": peak,
        "pools_within_limits": all(peak[name] <= pools.get(name, 0) for name in peak),
        "task_tries_by_worker": dict(hosts),
        "backfill_tasks_by_worker": dict(backfill_hosts),
        "workers_used": sorted(set(backfill_hosts) & {topology.worker_host(w) for w in topology.worker_names()}),
        "backfill_seconds": round(wall, 1),
        "invoices_per_minute": round((len(f_dump["invoices"]) - len(issued)) / wall * 60, 1),
        "crm_picture": seeded,  # the seeded invoices' deals, to compare runs (issued invoices differ)
    }


def _plain(value: Any) -> Any:
    """As JSON has it (tuples become lists), so a picture compares equal to one read back from a file."""
    return json.loads(json.dumps(value, default=str))


def reference_backfill(data: dict[str, int], out: Path) -> None:
    """The same backfill by the engine alone, in this process, window after window, against a sandbox seeded
    alike (`data`) that answers at once: what a correct run leaves (deals, quarantine, client counts),
    written to `out` as JSON."""
    from fakturownia_sync.backfill import BackfillRequest
    from fakturownia_sync.backfill_run import BackfillRun
    from fakturownia_sync.config import load_config
    from fakturownia_sync.connections import SyncEndpoints, connect
    from sandbox.demo_config import DEMO_CONFIG
    from sandbox.inspection import crm_picture
    from sandbox.process import SandboxProcess

    config = load_config(DEMO_CONFIG)
    request = BackfillRequest.from_params(CONF, config, datetime.now(UTC).date())
    with SandboxProcess(**data, startup_timeout=300) as sandbox, tempfile.TemporaryDirectory() as tmp:
        connections = connect(SyncEndpoints.of(sandbox, f"sqlite:///{tmp}/reference.db"))
        try:
            run = BackfillRun(connections.fakturownia, connections.crm, connections.store, config, request)
            run.sync_clients("reference/clients")
            windows, _skipped = run.plan(max_windows=1024)
            for number, window in enumerate(windows):
                run.run_window(window, f"reference/{number}")
            quarantine = {str(e.record_id): e.reason for e in connections.store.open_quarantine("invoices_to_deals")}
        finally:
            connections.close()
        result = {
            "deals": _plain({str(key): deal for key, deal in crm_picture(sandbox)["deals"].items()}),
            "quarantine": quarantine,
            "fakturownia_clients": len(sandbox.dump("fakturownia")["clients"]),
            "crm_clients": len(sandbox.dump("sugester")["clients"]),
        }
    out.write_text(json.dumps(result))


class Reference:
    """`reference_backfill` in a process of its own, started next to the topology so it costs no wall time."""

    def __init__(self, data: dict[str, int], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.out = workdir / "reference.json"
        self.log = workdir / "reference.log"
        self.out.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scripts.scale", "--reference", json.dumps({**data, "out": str(self.out)})],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def result(self, timeout: float = 3600) -> dict[str, Any]:
        if self.process.wait(timeout) != 0:
            raise RuntimeError(f"the reference backfill failed; see {self.log}")
        return json.loads(self.out.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _overlaps(run: dict[str, Any], start: float, end: float) -> bool:
    """Whether a DAG run was running at some moment between `start` and `end`."""
    if not run.get("start_date") or not run.get("end_date"):
        return False
    return _time(run["start_date"]) < end and _time(run["end_date"]) > start


def peak_slots(tries: list[dict[str, Any]]) -> dict[str, int]:
    """The most slots of each pool held at once, from the tries' start and end times (a try holds
    `pool_slots` slots while it runs; one ending at the instant another starts does not overlap it)."""
    events: dict[str, list[tuple[float, int]]] = {}
    for ti in tries:
        if not ti.get("start_date") or not ti.get("pool"):
            continue
        slots = int(ti.get("pool_slots") or 1)
        end = _time(ti.get("end_date")) or time.time()
        events.setdefault(ti["pool"], []).extend([(_time(ti["start_date"]), slots), (end, -slots)])
    peak: dict[str, int] = {}
    for pool, marks in events.items():
        held = top = 0
        for _when, delta in sorted(marks):  # at one instant, -slots sorts before +slots
            held += delta
            top = max(top, held)
        peak[pool] = top
    return peak


def checks_pass(result: dict[str, Any]) -> bool:
    return (
        result["backfill_state"] == "success"
        and result["duplicate_deals"] == result["missing_deals"] == result["deals_on_missing_clients"] == 0
        and result["different_deals"] == result["extra_deals"] == 0
        and result["quarantine_as_reference"]
        and result["duplicate_clients"] == result["missing_clients"] == 0
        and result["pools_within_limits"]
        and len(result["workers_used"]) == result["workers"]
    )


def run_phase(
    workdir: Path,
    workers: int,
    *,
    window: str = "month",
    sync_every: float = 60,
    issue_every: float = 2,
    log=print,
    **topology_args,
) -> dict:
    """One fresh topology with `workers` workers: start, drive, check, stop (whatever happens)."""
    topology = Topology(workdir=workdir, workers=workers, log=log, **topology_args)
    reference = Reference(topology.sandbox_data(), workdir / "reference")
    started = time.monotonic()
    try:
        topology.start()
        log(f"  {workers} worker(s) ready after {time.monotonic() - started:.0f} s (logs: {topology.logs})")
        driven = drive(topology, window=window, sync_every=sync_every, issue_every=issue_every, log=log)
        return check(topology, driven, reference.result())
    finally:
        reference.stop()
        topology.stop()


def render(results: list[dict[str, Any]]) -> str:
    """The table: one column per worker count."""

    def fmt(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "-"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        return f"{value:,}" if isinstance(value, int) else str(value)

    rows = [
        ("invoices in the sandbox (seeded)", "invoices"),
        ("issued during the backfill / with a deal", ("invoices_issued_meanwhile", "issued_with_a_deal")),
        ("backfill run", "backfill_state"),
        ("backfill wall time (s)", "backfill_seconds"),
        ("throughput (invoices/min)", "invoices_per_minute"),
        ("scheduled-DAG runs overlapping it", "sync_runs_during_backfill"),
        ("scheduled-DAG runs by state", "sync_runs"),
        ("deals / in the reference run", ("deals", "reference_deals")),
        ("quarantined invoices", "quarantined"),
        ("same invoices quarantined as in the reference", "quarantine_as_reference"),
        ("... for another reason (reference -> run)", "quarantine_other_reason"),
        ("duplicate deals", "duplicate_deals"),
        ("missing deals", "missing_deals"),
        ("deals different from the reference / extra", ("different_deals", "extra_deals")),
        ("deals on a missing client", "deals_on_missing_clients"),
        ("clients Fakturownia / CRM / in review", ("fakturownia_clients", "crm_clients", "clients_under_review")),
        ("duplicate clients", "duplicate_clients"),
        ("missing clients", "missing_clients"),
        ("pool slots", "pool_slots"),
        ("most slots held at once", "pool_peak"),
        ("pools within their slots", "pools_within_limits"),
        ("backfill tasks by worker", "backfill_tasks_by_worker"),
        ("all task tries by worker", "task_tries_by_worker"),
    ]
    table = [["", *(f"{r['workers']} worker(s)" for r in results)]]
    for label, key in rows:
        keys = key if isinstance(key, tuple) else (key,)
        table.append([label, *(" / ".join(fmt(r[k]) for k in keys) for r in results)])
    if len(results) > 1 and results[-1]["backfill_seconds"]:
        speedup = results[-1]["backfill_seconds"] / results[0]["backfill_seconds"]
        table.append([f"speed-up, {results[0]['workers']} vs {results[-1]['workers']}", f"{speedup:.2f}x", ""])
        same = results[0]["crm_picture"] == results[-1]["crm_picture"]
        table.append(["seeded invoices' deals equal across runs", "yes" if same else "NO", ""])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """The machine the figures come from: CPU model, cores, RAM, Python."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "ram_gb": round(memory_gb, 1),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1], help="worker counts, one run each")
    parser.add_argument("--latency-ms", type=float, default=150, help="the sandbox's delay on every request")
    parser.add_argument("--window", default="month", help="backfill window size (one mapped task each)")
    parser.add_argument("--sync-every", type=float, default=60, help="seconds between runs of the scheduled DAGs")
    parser.add_argument("--issue-every", type=float, default=2, help="seconds between new invoices (0: none)")
    parser.add_argument("--workdir", type=Path, help="logs and Airflow home (default: a new temporary directory)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "scale.json")
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        spec = json.loads(args.reference)
        reference_backfill({k: v for k, v in spec.items() if k != "out"}, Path(spec["out"]))
        return
    # Stopped from outside (even when started in the background, where SIGINT is ignored), every process the
    # run started is still ended: the exception unwinds through the topology's `finally`.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fakturownia-scale-"))
    results = []
    for workers in args.workers:
        print(f"{workers} Celery worker(s), {args.invoices:,} invoices, sandbox at {args.latency_ms:g} ms ...")
        results.append(
            run_phase(
                workdir / f"{workers}-workers",
                workers,
                window=args.window,
                sync_every=args.sync_every,
                issue_every=args.issue_every,
                invoices=args.invoices,
                latency_ms=args.latency_ms,
            )
        )
    print()
    print(render(results))
    about = machine()
    print(f"\nMachine: {about['cpu']}, {about['cores']} cores, {about['ram_gb']} GB RAM, Python {about['python']}")
    ok = all(checks_pass(result) for result in results)
    report = {"machine": about, "results": [{k: v for k, v in r.items() if k != "crm_picture"} for r in results]}
    if len(results) > 1:
        report["crm_equal_across_runs"] = results[0]["crm_picture"] == results[-1]["crm_picture"]
        ok = ok and report["crm_equal_across_runs"]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"\n{'PASS' if ok else 'FAIL'}: JSON in {args.json}; logs in {workdir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
