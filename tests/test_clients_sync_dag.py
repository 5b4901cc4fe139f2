"""The client sync DAG under real Airflow 3.3 (`airflow dags test`) against the sandbox: one run, ~20 s."""

from __future__ import annotations

import csv
from pathlib import Path

from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.airflow_harness import FAKTUROWNIA_TOKEN, SUGESTER_TOKEN, connections_env, dags_test


def test_clients_dag_run_syncs_exports_review_and_leaks_no_token(airflow_env, tmp_path: Path) -> None:
    tokens = {"fakturownia_token": FAKTUROWNIA_TOKEN, "sugester_token": SUGESTER_TOKEN}
    with SandboxProcess(seed=9, clients=50, invoices=0, crm_clients=25, **tokens) as sandbox:
        state_db, review_csv = tmp_path / "state.db", tmp_path / "review.csv"
        env = {
            **airflow_env,
            **connections_env(sandbox, state_db),
            "AIRFLOW__FAKTUROWNIA_SYNC__REVIEW_EXPORT_FOLDER": str(tmp_path),
        }
        result = dags_test(env, "fakturownia_clients_sync", conf={"review_csv_path": str(review_csv)})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    store = StateStore(f"sqlite:///{state_db}")
    run, links = store.last_run("clients_sync"), store.all_client_links()
    store.close()
    summary = run["summary"]
    assert run["status"] == "success"
    assert summary["clients_linked"] > 0 and summary["created_in_crm"] > 0
    assert len(links) == summary["clients_linked"] + summary["created_in_crm"] + summary["created_in_fakturownia"]
    with review_csv.open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == sum(summary["review_by_reason"].values())

    captured = result.stdout + result.stderr + review_csv.read_text(encoding="utf-8")
    for log_file in Path(airflow_env["AIRFLOW_HOME"]).rglob("*.log"):
        captured += log_file.read_text(errors="replace")
    assert "created_in_crm" in captured  # the scan really covers the run's output
    for token in tokens.values():
        for fragment in (token, token.split("/")[0], token.replace("/", "%2F")):
            assert fragment not in captured
