"""Webhook to deal: how long after an invoice is created in Fakturownia its deal appears in the CRM (not a test).

    .venv/bin/python -m scripts.bench_webhooks [--invoices 100] [--interval 2] [--json bench-results/webhooks.json]

Real parts on this machine: the sandbox answering after 150 ms (as a distant API does) and delivering a webhook
for every invoice created, a real Airflow (api-server with the plugin's receiver, scheduler, dag-processor,
LocalExecutor; PostgreSQL as the metadata DB, its own database, recreated each time) and the DAG
`fakturownia_invoices_to_deals` scheduled on its asset or every 15 minutes. After a first run has swept the
seeded invoices, `--invoices` new invoices are created one every `--interval` seconds; a watcher reads the CRM
every 0.25 s. Latency = the deal's first sighting minus the moment the invoice's create was answered; the
median and p95 are printed with the runs the webhooks started and the events each folded.

`LocalAirflow` is the small Airflow this benchmark and tests/test_webhooks.py start on a temporary AIRFLOW_HOME.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from scripts.ports import free_port as ports_free_port

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PORTS = range(19700, 19800)
WEBHOOK_PATH = "/fakturownia-sync/webhooks/fakturownia"
DAG_ID = "fakturownia_invoices_to_deals"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# The metadata DB migrated and the API pools the DAGs' tasks use (a scheduler holds tasks of a missing pool).
PREPARE = (
    "from airflow.utils.db import upgradedb; from scripts.airflow_setup import ensure_pools; "
    "upgradedb(); ensure_pools()"
)


def free_port(ports: range = PORTS) -> int:
    return ports_free_port(ports)


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """`check()`'s first truthy result, polled every `every` seconds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")


@dataclass
class LocalAirflow:
    """An Airflow on one temporary AIRFLOW_HOME: migrated, the DAGs serialised, the api-server serving the
    plugin (webhook receiver included); the scheduler and dag-processor when asked. Every process runs in its
    own process group, which `stop()` ends.

    `connections` are `AIRFLOW_CONN_*`/`AIRFLOW_VAR_*` entries (the sandbox, the state DB, the webhook token);
    `database_url` None keeps the metadata DB in SQLite under the home.
    """

    home: Path
    port: int
    connections: dict[str, str]
    database_url: str | None = None
    log_port: int = field(default_factory=lambda: free_port(range(19790, 19800)))  # the executor's log server
    processes: list[subprocess.Popen] = field(default_factory=list)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    _jwt_secret: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    _token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{WEBHOOK_PATH}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        env.update(self.connections)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_port),
            }
        )
        if self.database_url:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.database_url
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = self.database_url  # psycopg 3 serves both
        return env

    def start(self) -> None:
        """Migrate, then the api-server (while the DAGs are serialised, so their assets exist); returns once it
        answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        run = {"env": self.env, "cwd": ROOT, "check": True, "capture_output": True, "timeout": 600}
        subprocess.run([sys.executable, "-c", PREPARE], **run)
        self.spawn("api-server", "--host", "127.0.0.1", "--port", str(self.port))
        subprocess.run([AIRFLOW, "dags", "reserialize"], **run)
        wait_for(self.healthy, 180, "the api-server")

    def start_scheduler(self) -> None:
        self.spawn("scheduler")
        self.spawn("dag-processor")

    def spawn(self, *command: str) -> None:
        with (self.home / f"{command[0]}.log").open("ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [AIRFLOW, *command],
                    env=self.env,
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() ends it with every child
                )
            )

    def stop(self, grace: float = 10) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call of the public REST API (`/api/v2<path>`) with a login token from `POST /auth/token`."""
        if self._token is None:
            answer = requests.post(
                f"{self.url}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        answer = requests.request(
            method, f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self._token}"}, timeout=60, **kwargs
        )
        answer.raise_for_status()
        return answer.json()

    def asset_events(self, uri: str) -> list[dict[str, Any]]:
        (asset,) = [a for a in self.api("GET", "/assets", params={"uri_pattern": uri})["assets"] if a["uri"] == uri]
        return self.api("GET", "/assets/events", params={"asset_id": asset["id"], "limit": 100})["asset_events"]

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def run_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The asset events that started a run (Airflow 3.3.2 answers 500 while the run is queued)."""
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/upstreamAssetEvents")["asset_events"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.home.rglob("*.log"))


def invoice_body(buyer: str) -> dict[str, Any]:
    """A VAT invoice of today for a new buyer (no card): the sync makes its CRM client and its deal."""
    return {
        "kind": "vat", "issue_date": date.today().isoformat(), "buyer_name": buyer, "buyer_post_code": "00-950",
        "buyer_city": "Warszawa",
        "positions": [{"name": "Usługa", "quantity": 1, "total_price_gross": "246.00", "tax": 23}],
    }  # fmt: skip


def create_invoice(sandbox: Any, buyer: str) -> int:
    answer = requests.post(
        f"{sandbox.fakturownia_url}/invoices.json",
        json={"api_token": sandbox.fakturownia_token, "invoice": invoice_body(buyer)},
        timeout=60,
    )
    answer.raise_for_status()
    return int(answer.json()["id"])


class DealWatcher(threading.Thread):
    """Reads the CRM (the sandbox's control dump: no latency, not counted) every `every` seconds and notes
    when each invoice's deal is first seen."""

    def __init__(self, sandbox: Any, every: float = 0.25) -> None:
        super().__init__(daemon=True, name="deal-watcher")
        self.sandbox, self.every = sandbox, every
        self.first_seen: dict[int, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        from sandbox.inspection import deals_by_invoice

        while not self._halt.is_set():
            now = time.monotonic()
            for invoice_id in deals_by_invoice(self.sandbox):
                self.first_seen.setdefault(invoice_id, now)
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p95 of 100 values is the 95th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def measure(invoices: int, interval: float, latency_ms: float, timeout: float) -> dict[str, Any]:
    import sqlalchemy as sa

    from sandbox.demo_config import DEMO_CONFIG
    from sandbox.process import SandboxProcess

    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    database = "fs_webhooks_bench"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    webhook_token = secrets.token_urlsafe(24)
    port = free_port()
    sandbox = SandboxProcess(
        seed=42, clients=20, invoices=15, crm_clients=10, latency_ms=latency_ms,
        webhook_url=f"http://127.0.0.1:{port}{WEBHOOK_PATH}", webhook_token=webhook_token,
        log_path=workdir / "sandbox.log",
    )  # fmt: skip
    connections = {
        "AIRFLOW_CONN_FAKTUROWNIA_DEFAULT": json.dumps(
            {"conn_type": "http", "host": sandbox.fakturownia_url, "password": sandbox.fakturownia_token}
        ),
        "AIRFLOW_CONN_SUGESTER_DEFAULT": json.dumps(
            {"conn_type": "http", "host": sandbox.sugester_url, "password": sandbox.sugester_token}
        ),
        "AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB": json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{workdir / 'state.db'}"}}
        ),
        "AIRFLOW_CONN_FAKTUROWNIA_WEBHOOK": json.dumps({"conn_type": "generic", "password": webhook_token}),
        "AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG": json.dumps(DEMO_CONFIG),
    }
    airflow = LocalAirflow(
        workdir / "airflow", port, connections, database_url=PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    )
    watcher = DealWatcher(sandbox)
    try:
        started = time.monotonic()
        airflow.start()
        airflow.start_scheduler()
        airflow.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        airflow.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
        up = time.monotonic() - started
        print(f"  Airflow up in {up:.0f} s; a first run sweeps the seeded invoices ...", flush=True)
        wait_for(lambda: any(r["state"] == "success" for r in airflow.dag_runs(DAG_ID)), 600, "the first run", every=2)
        watcher.start()
        created: dict[int, float] = {}
        for n in range(invoices):
            invoice_id = create_invoice(sandbox, f"Webhook Bench {n} sp. z o.o.")
            created[invoice_id] = time.monotonic()
            time.sleep(max(0.0, interval - (time.monotonic() - created[invoice_id])))
        print(f"  {invoices} invoices created; waiting for their deals ...", flush=True)
        try:
            wait_for(lambda: set(created) <= set(watcher.first_seen), timeout, "every deal", every=1)
        except AssertionError as exc:
            print(f"  {exc}")
        watcher.stop()
        latencies = [watcher.first_seen[i] - t for i, t in created.items() if i in watcher.first_seen]
        runs = [r for r in airflow.dag_runs(DAG_ID) if r["run_type"] == "asset_triggered"]
        run_seconds = [
            (datetime.fromisoformat(r["end_date"]) - datetime.fromisoformat(r["start_date"])).total_seconds()
            for r in runs
            if r["start_date"] and r["end_date"]
        ]
        deliveries = sandbox.webhooks()
    finally:
        watcher.stop()
        airflow.stop()
        sandbox.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "invoices": invoices,
        "interval_s": interval,
        "latency_ms": latency_ms,
        "deals_seen": len(latencies),
        "median_s": round(statistics.median(latencies), 2) if latencies else None,
        "p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
        "max_s": round(max(latencies), 2) if latencies else None,
        "asset_triggered_runs": len(runs),
        "run_seconds_median": round(statistics.median(run_seconds), 1) if run_seconds else None,
        "run_seconds_max": round(max(run_seconds), 1) if run_seconds else None,
        "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
        "latencies_s": [round(latency, 2) for latency in latencies],
        "webhooks_delivered": deliveries["delivered"],
        "webhooks_failed": deliveries["failed"],
    }


def main() -> None:
    from scripts.bench import machine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=100)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two invoice creates")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="the sandbox's answer delay")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the last deal")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    print(f"Webhook → deal: {args.invoices} new invoices, one every {args.interval:g} s, sandbox at "
          f"{args.latency_ms:g} ms; machine: {machine()}")  # fmt: skip
    result = {**measure(args.invoices, args.interval, args.latency_ms, args.timeout), "machine": machine()}
    print(
        f"  deals {result['deals_seen']}/{result['invoices']}; latency median {result['median_s']} s, "
        f"p95 {result['p95_s']} s, max {result['max_s']} s\n"
        f"  webhooks delivered {result['webhooks_delivered']}, failed {result['webhooks_failed']}; they started "
        f"{result['asset_triggered_runs']} runs (bursts fold into one run) of {result['run_seconds_median']} s "
        f"median, {result['run_seconds_max']} s max; load average at the end {result['load_average_at_end']}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["deals_seen"] < result["invoices"] or result["webhooks_failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
