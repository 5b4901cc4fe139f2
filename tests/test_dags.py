"""The DAGs under real Airflow 3.3 (`airflow dags test` on a migrated SQLite AIRFLOW_HOME) and the sandbox.

Each `airflow dags test` costs ~15 s, so only the paths users meet first run here; the engine's many
cases are tested directly in the other modules.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.state import StateStore
from sandbox.process import SandboxProcess
from scripts.airflow_setup import DEMO_CONFIG
from tests.sync_harness import deals_by_invoice, duplicates

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_IDS = {"fakturownia_invoices_to_deals"}
FAKTUROWNIA_TOKEN = "fkTok3n-E2E-9f8e7d/sandbox"
SUGESTER_TOKEN = "sgTok3n-E2E-1a2b3c/sandbox"


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    tokens = {"fakturownia_token": FAKTUROWNIA_TOKEN, "sugester_token": SUGESTER_TOKEN}
    with SandboxProcess(seed=3, clients=40, invoices=200, crm_clients=10, **tokens) as running:
        yield running


def connections_env(sandbox: SandboxProcess, state_db: Path, fakturownia_token: str = FAKTUROWNIA_TOKEN) -> dict:
    def conn(url: str, token: str) -> str:
        return json.dumps({"conn_type": "http", "host": url, "password": token})

    return {
        "AIRFLOW_CONN_FAKTUROWNIA_DEFAULT": conn(sandbox.fakturownia_url, fakturownia_token),
        "AIRFLOW_CONN_SUGESTER_DEFAULT": conn(sandbox.sugester_url, SUGESTER_TOKEN),
        "AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB": json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{state_db}"}}
        ),
        "AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG": json.dumps(DEMO_CONFIG),
    }


def dags_test(env: dict[str, str], dag_id: str = "fakturownia_invoices_to_deals") -> subprocess.CompletedProcess:
    return subprocess.run(
        [AIRFLOW, "dags", "test", dag_id], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )


def test_dagbag_imports_cleanly(airflow_env: dict[str, str]) -> None:
    probe = (
        "import json; from airflow.dag_processing.dagbag import DagBag; "
        f"bag = DagBag(dag_folder={str(ROOT / 'dags')!r}); "
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()}, "
        "'dags': {d: bool(bag.dags[d].doc_md) for d in bag.dag_ids}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=airflow_env, capture_output=True, text=True, timeout=300, check=True
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert set(found["dags"]) >= DAG_IDS
    assert all(found["dags"].values()), "every DAG documents itself in doc_md"


def test_dag_run_syncs_and_leaks_no_token(airflow_env, sandbox: SandboxProcess, tmp_path: Path) -> None:
    state_db = tmp_path / "state.db"
    env = {**airflow_env, **connections_env(sandbox, state_db)}
    first = dags_test(env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    grouped = deals_by_invoice(sandbox)
    assert grouped and duplicates(grouped) == {}

    second = dags_test(env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    store = StateStore(f"sqlite:///{state_db}")
    summary = store.last_run("invoices_to_deals")["summary"]
    store.close()
    assert (summary["deals_created"], summary["deals_updated"]) == (0, 0)
    assert len(deals_by_invoice(sandbox)) == len(grouped)

    captured = first.stdout + first.stderr + second.stdout + second.stderr
    for log_file in Path(airflow_env["AIRFLOW_HOME"]).rglob("*.log"):
        captured += log_file.read_text(errors="replace")
    with sqlite3.connect(state_db) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            captured += repr(db.execute(f"SELECT * FROM {table}").fetchall())
    assert "deals_created" in captured  # the scan really covers the run's output and state
    for token in (FAKTUROWNIA_TOKEN, SUGESTER_TOKEN):
        for fragment in (token, token.split("/")[0], token.replace("/", "%2F")):
            assert fragment not in captured


def test_wrong_token_fails_the_first_task_naming_the_account(airflow_env, sandbox, tmp_path: Path) -> None:
    env = {**airflow_env, **connections_env(sandbox, tmp_path / "state.db", fakturownia_token="wrong-Tok3n-xyz")}
    deals_before = len(sandbox.dump("sugester")["deals"])
    result = dags_test(env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Fakturownia rejected the API token for account '127.0.0.1'" in output
    assert "fakturownia_default" in output
    assert "wrong-Tok3n-xyz" not in output
    assert len(sandbox.dump("sugester")["deals"]) == deals_before


def test_bad_config_fails_naming_the_key(airflow_env, sandbox, tmp_path: Path) -> None:
    env = {**airflow_env, **connections_env(sandbox, tmp_path / "state.db")}
    env["AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG"] = json.dumps({**DEMO_CONFIG, "deal_amount": "brutto", "extra": 1})
    result = dags_test(env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "key 'deal_amount'" in output and "unknown key 'extra'" in output
