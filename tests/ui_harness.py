"""A real Airflow api-server with the integration page, over a seeded sandbox and state DB, for the UI tests.

One server per test module (it takes ~20 s to start): a temporary AIRFLOW_HOME whose metadata DB is a copy of
one migrated once per session with the DAGs serialised (`airflow_template`, so the UI can show and trigger
them without a dag-processor), SimpleAuthManager with known users of two roles, and connections and the
config Variable as AIRFLOW_CONN_* / AIRFLOW_VAR_* pointing at a sandbox whose state DB was seeded by running
the real client and invoice syncs once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from scripts.ports import free_port as ports_free_port
from tests.airflow_harness import AIRFLOW, ROOT, connections_env
from tests.clients_harness import make_clients_sync
from tests.sync_harness import DEMO_CONFIG, make_sync

PORTS = range(19300, 19400)
# Small enough to seed in about a second, and it gives every section something to show: quarantined
# invoices (malformed dates, an undecidable buyer), review entries of several reasons, three departments.
SANDBOX = {"seed": 21, "clients": 60, "invoices": 150, "crm_clients": 30}

# SimpleAuthManager users: name → (role, password). The viewer may look, not act.
USERS = {"ania": ("admin", "ania-pass-4821"), "wiktor": ("viewer", "wiktor-pass-7305")}
ADMIN, VIEWER = "ania", "wiktor"

# The demo config plus Fakturownia users, so the pairing table has a pair, a near miss and a loner.
CONFIG = {
    **DEMO_CONFIG,
    "fakturownia_users": [
        {"id": 501, "login": "anna.kowalczyk", "email": "anna.kowalczyk@przyklad-handel.pl"},
        {"id": 502, "login": "piotr.wisniewski", "email": "piotr@example.com"},
        {"id": 503, "login": "jan.nowak", "email": "jan.nowak@przyklad-handel.pl"},
    ],
}

PAGE_PATH = "/fakturownia-sync/"


def free_port() -> int:
    return ports_free_port(PORTS)


def seed_state(sandbox: SandboxProcess, state_db: Path) -> None:
    """Run the real client sync, then the invoice sync, once: review entries and quarantined invoices."""
    store = StateStore.open(f"sqlite:///{state_db}")
    try:
        make_clients_sync(sandbox, store, owner="fakturownia_clients_sync/seed").run()
        make_sync(sandbox, store, owner="fakturownia_invoices_to_deals/seed").run()
    finally:
        store.close()


@dataclass
class UiServer:
    """A running api-server (`url`), its environment, and the sandbox and state DB behind the page."""

    url: str
    env: dict[str, str]
    home: Path
    sandbox: SandboxProcess
    state_db: Path
    process: subprocess.Popen

    @property
    def page_url(self) -> str:
        return self.url + PAGE_PATH

    def store(self) -> StateStore:
        return StateStore.open(f"sqlite:///{self.state_db}")

    def token(self, user: str) -> str:
        """A JWT from the real login endpoint (`POST /auth/token`)."""
        response = requests.post(
            f"{self.url}/auth/token", json={"username": user, "password": USERS[user][1]}, timeout=30
        )
        assert response.status_code == 201, response.text
        return response.json()["access_token"]

    def session(self, user: str) -> requests.Session:
        """A requests session logged in as `user` through the UI's `_token` cookie, like a browser."""
        session = requests.Session()
        session.cookies.set("_token", self.token(user), domain="127.0.0.1", path="/")
        return session

    def log_tail(self, limit: int = 4000) -> str:
        log = self.home / "api-server.log"
        return log.read_text(errors="replace")[-limit:] if log.exists() else ""


def base_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }


@pytest.fixture(scope="session")
def airflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIRFLOW_HOME migrated and with the DAGs serialised, once per session; each server copies its DB."""
    home = tmp_path_factory.mktemp("ui_airflow_template")
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run(
            [AIRFLOW, *command], env=base_env(home), capture_output=True, text=True, timeout=300, cwd=ROOT
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return home


def airflow_env(home: Path, sandbox: SandboxProcess, state_db: Path) -> dict[str, str]:
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({name: password for name, (_role, password) in USERS.items()}))
    env = {
        **base_env(home),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{role}" for n, (role, _p) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "ui-tests-jwt-secret-0123456789abcdef",
        "AIRFLOW__API__SECRET_KEY": "ui-tests-secret-key-0123456789abcdef",
        **connections_env(sandbox, state_db),
        "AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG": json.dumps(CONFIG),
    }
    return env


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"api-server exited with {process.returncode}: {log.read_text(errors='replace')[-3000:]}"
            )
        try:
            if requests.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"api-server not ready in {timeout} s: {log.read_text(errors='replace')[-3000:]}")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (gunicorn/uvicorn workers included), then SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def ui_server(workdir: Path, template: Path) -> Iterator[UiServer]:
    """Sandbox + seeded state DB + a copy of the template's metadata DB + api-server; all stopped after."""
    home = workdir / "airflow_home"
    home.mkdir(parents=True)
    for db_file in template.glob("airflow.db*"):
        shutil.copy2(db_file, home / db_file.name)
    state_db = workdir / "state.db"
    with SandboxProcess(**SANDBOX, log_path=workdir / "sandbox.log") as sandbox:
        seed_state(sandbox, state_db)
        env = airflow_env(home, sandbox, state_db)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = home / "api-server.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [AIRFLOW, "api-server", "--apps", "core", "--host", "127.0.0.1", "--port", str(port)],
                env={**env, "AIRFLOW__API__BASE_URL": url},
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        try:
            _wait_ready(url, process, log)
            yield UiServer(url, env, home, sandbox, state_db, process)
        finally:
            stop_process_group(process)


def decisions_by(store: StateStore, user: str) -> list[dict[str, Any]]:
    return [d for d in store.review_decision_audit() if d["decided_by"] == user]
