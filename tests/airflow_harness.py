"""Helpers for tests that run DAGs with `airflow dags test` against the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sandbox.demo_config import DEMO_CONFIG
from sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FAKTUROWNIA_TOKEN = "fkTok3n-E2E-9f8e7d/sandbox"
SUGESTER_TOKEN = "sgTok3n-E2E-1a2b3c/sandbox"


def connections_env(sandbox: SandboxProcess, state_db: Path, fakturownia_token: str | None = None) -> dict:
    """AIRFLOW_CONN_* / AIRFLOW_VAR_* pointing the DAGs at this sandbox and an SQLite state DB."""

    def conn(url: str, token: str) -> str:
        return json.dumps({"conn_type": "http", "host": url, "password": token})

    return {
        "AIRFLOW_CONN_FAKTUROWNIA_DEFAULT": conn(
            sandbox.fakturownia_url, fakturownia_token or sandbox.fakturownia_token
        ),
        "AIRFLOW_CONN_SUGESTER_DEFAULT": conn(sandbox.sugester_url, sandbox.sugester_token),
        "AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB": json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{state_db}"}}
        ),
        "AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG": json.dumps(DEMO_CONFIG),
    }


def dags_test(
    env: dict[str, str], dag_id: str = "fakturownia_invoices_to_deals", conf: dict | None = None
) -> subprocess.CompletedProcess:
    command = [AIRFLOW, "dags", "test", dag_id]
    if conf is not None:
        command += ["-c", json.dumps(conf)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
