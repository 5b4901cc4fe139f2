"""Airflow on CeleryExecutor with real processes on this machine: what `make scale` and tests/test_scale.py run.

One `Topology` is PostgreSQL as the metadata DB (its own database, cloned from a migrated template so a fresh
start takes seconds instead of a minute of `airflow db migrate`), the local Redis as the Celery broker (its own
DB number), the api-server, scheduler, dag-processor, triggerer and N Celery workers, plus the sandbox APIs and
a sync-state database on PostgreSQL. Every Airflow process shares the JWT secret, the API secret key, the
fernet key and the execution API URL: without one shared JWT secret a worker's tasks are refused with
"Signature verification failed". Connections and the config Variable come from `AIRFLOW_CONN_*` /
`AIRFLOW_VAR_*`, as a deployment's secrets backend would hand them over; the pools are made with
`airflow pools set`, the command the compose file's init job runs.

Each worker has its own Celery name (`-H w1@%h`), its own log-server port and its own task-instance hostname.
Two workers on one machine would otherwise report the same host (task instances record
`[core] hostname_callable`, the machine's FQDN by default), and "which worker ran this task" could not be
read back from Airflow. The callable is a small module written into `$AIRFLOW_HOME/config` (on Airflow's
`sys.path`) that names the worker from its environment.

Every process runs in its own process group and `stop()` ends the groups (SIGTERM, then SIGKILL), whatever
failed on the way; Redis is left running (it is shared), only this topology's DB number is flushed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SANDBOX_TOKENS = {"fakturownia": "fk-scale-token", "sugester": "sg-scale-token"}
SCHEDULED_DAGS = ("fakturownia_invoices_to_deals", "fakturownia_clients_sync")

# Written to $AIRFLOW_HOME/config/scale_worker_host.py: a worker's task instances report its own name.
HOSTNAME_MODULE = '''"""A Celery worker's name as its task instances' hostname (scripts/topology.py)."""

import os
import socket


def hostname() -> str:
    return os.environ.get("FAKTUROWNIA_SCALE_WORKER_HOST") or socket.getfqdn()
'''


class TopologyError(RuntimeError):
    """A component did not start or did not become ready; the message names its log."""


@dataclass
class Ports:
    """This topology's TCP ports: api-server, the workers' log servers, the triggerer's, the sandbox's."""

    api: int = 19800
    first_worker_log: int = 19801
    triggerer_log: int = 19809
    fakturownia: int = 19810
    sugester: int = 19811

    def worker_log(self, index: int) -> int:
        return self.first_worker_log + index


@dataclass
class Topology:
    """Everything `make scale` starts; `start()` then `stop()` (also usable as a context manager).

    `name` prefixes the two databases (`<name>_airflow`, `<name>_state`); `workers` is the number of Celery
    workers, each `-c concurrency`. The sandbox is seeded with `invoices` invoices (and a tenth as many
    clients, a thirtieth as many CRM clients, as `make bench` does) and answers after `latency_ms`.
    """

    workdir: Path
    name: str = "fakturownia_scale"
    workers: int = 2
    concurrency: int = 2
    invoices: int = 10_000
    latency_ms: float = 150
    seed: int = 42
    redis_db: int = 5
    ports: Ports = field(default_factory=Ports)
    config: dict[str, Any] | None = None
    log: Any = print
    sandbox: Any = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    _secrets: dict[str, str] = field(default_factory=dict, repr=False)
    _token: str | None = field(default=None, repr=False)
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    # -- names -----------------------------------------------------------------

    @property
    def airflow_db(self) -> str:
        return f"{self.name}_airflow"

    @property
    def state_db(self) -> str:
        return f"{self.name}_state"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def broker_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}"

    @property
    def home(self) -> Path:
        return self.workdir / "airflow"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def sandbox_data(self) -> dict[str, int]:
        """What the sandbox is seeded with (a reference run seeds its own sandbox alike)."""
        return {
            "seed": self.seed,
            "invoices": self.invoices,
            "clients": max(50, self.invoices // 10),
            "crm_clients": max(15, self.invoices // 30),
        }

    def worker_names(self) -> list[str]:
        return [f"w{n + 1}" for n in range(self.workers)]

    def worker_host(self, worker: str) -> str:
        """The hostname a worker's task instances carry (and, for Celery, `-H <worker>@<host>`)."""
        return f"{worker}@{socket.gethostname()}"

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Topology:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Databases, broker, sandbox, Airflow components; returns once the DAGs are parsed and every worker
        answers a Celery ping."""
        from sandbox.process import SandboxProcess

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        (self.home / "config").mkdir(parents=True, exist_ok=True)
        (self.home / "config" / "scale_worker_host.py").write_text(HOSTNAME_MODULE)
        (self.home / "passwords.json").write_text(json.dumps({"scale": self._password}))
        self._secrets = {
            "jwt": secrets.token_urlsafe(32),
            "api": secrets.token_urlsafe(32),
            "fernet": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        ensure_postgres()
        ensure_redis()
        redis_cli("-n", str(self.redis_db), "flushdb")  # no task left queued by an earlier, interrupted run
        started = time.monotonic()
        template = self._migrated_template()
        recreate_database(self.airflow_db, template=template)
        recreate_database(self.state_db)
        self.log(f"  metadata DB {self.airflow_db} (from {template}), state DB {self.state_db}: "
                 f"{time.monotonic() - started:.0f} s")  # fmt: skip
        self.sandbox = SandboxProcess(
            **self.sandbox_data(),
            latency_ms=self.latency_ms,
            fakturownia_port=self.ports.fakturownia,
            sugester_port=self.ports.sugester,
            fakturownia_token=SANDBOX_TOKENS["fakturownia"],
            sugester_token=SANDBOX_TOKENS["sugester"],
            log_path=self.logs / "sandbox.log",
            startup_timeout=300,
        )
        self._airflow_cli("pools-import", "pools", "import", str(self._pools_file()))
        self._spawn("api-server", [AIRFLOW, "api-server", "--port", str(self.ports.api), "--workers", "1"])
        for component in ("scheduler", "dag-processor", "triggerer"):
            self._spawn(component, [AIRFLOW, component])
        for index, worker in enumerate(self.worker_names()):
            self.start_worker(worker, index)
        self._wait_ready()

    def start_worker(self, worker: str, index: int) -> None:
        env = {
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports.worker_log(index)),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "scale_worker_host.hostname",
            "FAKTUROWNIA_SCALE_WORKER_HOST": self.worker_host(worker),
        }
        command = [AIRFLOW, "celery", "worker", "-q", "default", "-c", str(self.concurrency), "-H", f"{worker}@%h"]
        self._spawn(worker, command, env)

    def stop(self) -> None:
        """End every process this topology started: the workers first (a warm shutdown: no task is left
        half-done), then the other components all at once, then the sandbox."""
        workers = [self.processes.pop(name) for name in list(self.processes) if name.startswith("w")]
        _end_groups(workers)
        _end_groups(list(self.processes.values()))
        self.processes.clear()
        if self.sandbox is not None:
            self.sandbox.stop()
        self._session.close()

    # -- environment -----------------------------------------------------------

    def state_url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.state_db}"

    def env(self) -> dict[str, str]:
        """The environment every Airflow process shares (secrets included: never print it)."""
        from sandbox.demo_config import DEMO_CONFIG

        metadata = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.airflow_db}"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
        }
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": "16",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__FERNET_KEY": self._secrets["fernet"],
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "scale:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
                # psycopg 3 serves the async engine too (Airflow would pick asyncpg, which is not installed)
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata,
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secrets["jwt"],
                "AIRFLOW__API__SECRET_KEY": self._secrets["api"],
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports.triggerer_log),
                "AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG": json.dumps(self.config or DEMO_CONFIG),
                "AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB": json.dumps(
                    {"conn_type": "generic", "extra": {"url": self.state_url()}}
                ),
            }
        )
        if self.sandbox is not None:
            for api in ("fakturownia", "sugester"):
                env[f"AIRFLOW_CONN_{api.upper()}_DEFAULT"] = json.dumps(
                    {"conn_type": "http", "host": self.sandbox.url(api), "password": self.sandbox.token(api)}
                )
        return env

    def _pools_file(self) -> Path:
        from scripts.airflow_setup import POOLS

        path = self.workdir / "pools.json"
        path.write_text(
            json.dumps(
                {
                    name: {"slots": slots, "description": description, "include_deferred": False}
                    for name, (slots, description) in POOLS.items()
                }
            )
        )
        return path

    def _migrated_template(self) -> str:
        """A database `airflow db migrate` ran on, for this Airflow version; migrated once, then cloned."""
        from airflow import __version__ as airflow_version

        template = f"{self.name}_airflow_template"
        tag = f"airflow {airflow_version}"
        if database_comment(template) == tag:
            return template
        recreate_database(template)
        env = self.env()
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"):
            env[key] = env[key].replace(f"/{self.airflow_db}", f"/{template}")
        self.log(f"  migrating the metadata DB template {template} (once per Airflow version) ...")
        self._airflow_cli("db-migrate", "db", "migrate", env=env)
        psql(f"COMMENT ON DATABASE {template} IS '{tag}'")
        return template

    # -- processes -------------------------------------------------------------

    def _airflow_cli(self, label: str, *args: str, env: dict[str, str] | None = None) -> None:
        log_path = self.logs / f"{label}.log"
        with log_path.open("ab") as log:
            done = subprocess.run(
                [AIRFLOW, *args], env=env or self.env(), cwd=self.workdir, stdout=log, stderr=log, timeout=600
            )
        if done.returncode != 0:
            raise TopologyError(f"`airflow {' '.join(args)}` failed; see {log_path}")

    def _spawn(self, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            command,
            env={**self.env(), **(extra_env or {})},
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends it with every child
        )
        log.close()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise TopologyError(f"{name} exited with {process.returncode}; see {self.logs / (name + '.log')}")

    def _wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        pending = ["api-server", "dags", "workers"]
        while pending:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TopologyError(f"not ready after {timeout:.0f} s: {pending}; logs in {self.logs}")
            try:
                if pending[0] == "api-server":
                    requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).raise_for_status()
                elif pending[0] == "dags":
                    known = {dag["dag_id"] for dag in self.api("GET", "/dags", params={"limit": 100})["dags"]}
                    if not {"fakturownia_backfill", *SCHEDULED_DAGS} <= known:
                        raise TopologyError("DAGs not parsed yet")
                else:
                    answered = celery_ping(self.broker_url)
                    if not {f"{w}@{socket.gethostname()}" for w in self.worker_names()} <= answered:
                        raise TopologyError(f"workers answering: {sorted(answered)}")
                pending.pop(0)
            except (requests.RequestException, TopologyError):
                time.sleep(2)

    # -- REST API --------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call of the api-server's public REST API (`/api/v2<path>`) as the topology's admin user."""
        if self._token is None:
            answer = self._session.post(
                f"{self.api_url}/auth/token", json={"username": "scale", "password": self._password}, timeout=30
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        response = self._session.request(
            method,
            f"{self.api_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=60,
            **kwargs,
        )
        if response.status_code == 401:  # token expired: log in again once
            self._token = None
            return self.api(method, path, **kwargs)
        if response.status_code >= 400:
            raise TopologyError(f"{method} /api/v2{path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def paged(self, path: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a listing endpoint, page by page (the API caps `limit` at 100)."""
        offset = 0
        while True:
            page = self.api("GET", path, params={**params, "limit": 100, "offset": offset})
            yield from page[key]
            offset += len(page[key])
            if not page[key] or offset >= page["total_entries"]:
                return

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.paged(f"/dags/{dag_id}/dagRuns", "dag_runs"))

    def task_instances(self, dag_id: str = "~") -> list[dict[str, Any]]:
        """Every task instance (latest try) of every run of `dag_id` (`~`: of all DAGs)."""
        return list(self.paged(f"/dags/{dag_id}/dagRuns/~/taskInstances", "task_instances"))

    def earlier_tries(self, ti: dict[str, Any]) -> list[dict[str, Any]]:
        """The tries of a task instance before its latest (retries held their pool slot too)."""
        path = f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}"
        if ti.get("map_index", -1) >= 0:
            path += f"/{ti['map_index']}"
        tries = self.api("GET", f"{path}/tries")["task_instances"]
        return [t for t in tries if t["try_number"] < ti["try_number"]]

    def pools(self) -> dict[str, int]:
        return {pool["name"]: pool["slots"] for pool in self.paged("/pools", "pools")}


# -- PostgreSQL and Redis ----------------------------------------------------------


def _pg_connect(dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True, connect_timeout=5)


def ensure_postgres(timeout: float = 60) -> None:
    """PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); the local cluster is started when it is down."""
    import psycopg

    try:
        _pg_connect().close()
        return
    except psycopg.OperationalError:
        pass
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        raise TopologyError("PostgreSQL is not answering on 127.0.0.1:5432 and no local cluster is installed")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            _pg_connect().close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise TopologyError("PostgreSQL did not start on 127.0.0.1:5432") from None
            time.sleep(1)


def psql(statement: str, dbname: str = "postgres") -> list[tuple]:
    with _pg_connect(dbname) as connection:
        cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


def database_comment(name: str) -> str | None:
    rows = psql(f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = {_literal(name)}")
    return rows[0][0] if rows else None


def recreate_database(name: str, template: str | None = None) -> None:
    """Drop (closing its sessions) and create `name`, empty or as a copy of `template`."""
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def drop_database(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def redis_cli(*args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), *args], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()


def ensure_redis(timeout: float = 30) -> None:
    """The local Redis on 127.0.0.1:6379, started (no persistence, daemonized) when `redis-cli ping` fails.
    It is shared and left running."""
    if shutil.which("redis-cli") is None:
        raise TopologyError("redis-cli is not installed")
    if redis_cli("ping") == "PONG":
        return
    subprocess.run(["redis-server", "--port", str(REDIS_PORT), "--save", "", "--daemonize", "yes"], check=False)
    deadline = time.monotonic() + timeout
    while redis_cli("ping") != "PONG":
        if time.monotonic() > deadline:
            raise TopologyError("Redis did not start on 127.0.0.1:6379")
        time.sleep(0.5)


def celery_ping(broker_url: str) -> set[str]:
    """Names of the Celery workers that answer a ping through this broker."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=2.0) or []
    finally:
        app.close()
    return {name for reply in replies for name in reply}


def _end_groups(processes: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM each process group, wait for them all, then SIGKILL whatever is left of them and of their
    descendants: a worker's task processes run in sessions of their own, outside the worker's group."""
    import psutil

    descendants: list[psutil.Process] = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            descendants += psutil.Process(process.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
