"""The DAGs under real Airflow 3.3 (`airflow dags test` on a migrated SQLite AIRFLOW_HOME) and the sandbox.

Each `airflow dags test` costs ~15 s, so only the paths users meet first run here; the engine's many
cases are tested directly in the other modules.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakturownia_sync.state import StateStore
from sandbox.demo_config import DEMO_CONFIG
from sandbox.process import SandboxProcess
from tests.airflow_harness import FAKTUROWNIA_TOKEN, ROOT, SUGESTER_TOKEN, connections_env, dags_test
from tests.sync_harness import deals_by_invoice, duplicates

DAG_IDS = {"fakturownia_invoices_to_deals", "fakturownia_backfill"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    tokens = {"fakturownia_token": FAKTUROWNIA_TOKEN, "sugester_token": SUGESTER_TOKEN}
    with SandboxProcess(seed=3, clients=40, invoices=200, crm_clients=10, **tokens) as running:
        yield running


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
    account = sandbox.fakturownia_url.split("://", 1)[1].rstrip("/")  # a URL host is named with its port
    assert f"Fakturownia rejected the API token for account '{account}'" in output
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
