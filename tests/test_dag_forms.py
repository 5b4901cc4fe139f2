"""What a user meets in the Airflow UI, checked on the DagBag in this process (no `airflow dags test`):
the trigger forms (titles, help, optional values, multi-selects), window labels, one XCom per summary, pools,
descriptions and owners; the backfill report's arithmetic; and a set-up that keeps what exists."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import pytest

from fakturownia_sync.backfill import ENTITIES
from fakturownia_sync.config import INVOICE_KINDS
from fakturownia_sync_airflow.backfill_tasks import report_backfill

ROOT = Path(__file__).resolve().parents[1]
OUR_DAGS = {
    "fakturownia_clients_sync",
    "fakturownia_invoices_to_deals",
    "crm_deals_to_invoices",
    "fakturownia_backfill",
}
API_POOLS = {"fakturownia_api", "sugester_api"}
NO_API_TASKS = {"export_client_review", "report"}  # state DB or XComs only
LIST_PARAMS = {("fakturownia_backfill", "entities"): ENTITIES, ("fakturownia_backfill", "invoice_kinds"): INVOICE_KINDS}


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) >= OUR_DAGS
    return bag.dags


def serialized(dag: Any) -> Any:
    """The DAG as the api-server sees it when the form is submitted (its Params re-read from JSON)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def trigger(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """Validate a trigger's conf as the api-server does; the resolved Params."""
    return serialized(dag).params.deep_merge(conf).validate()


def types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    return list(kind) if isinstance(kind, list) else [kind] if kind else []


def test_every_dag_has_a_description_and_an_owner(dags) -> None:
    for dag_id, dag in dags.items():
        assert dag.description and dag.doc_md, dag_id
        assert dag.default_args.get("owner") == "data-engineering", dag_id
        assert {task.owner for task in dag.tasks} == {"data-engineering"}, dag_id


def test_every_param_has_a_title_a_description_and_a_default_the_form_accepts(dags) -> None:
    for dag_id, dag in dags.items():
        for name, param in dag.params.items():
            schema = param.schema
            assert schema.get("title") and param.description, f"{dag_id}.{name}"
            # The form marks a Param required (Trigger disabled while it is empty) unless its type allows null.
            if param.value is None or param.value == "":
                assert "null" in types(schema) and param.value is None, f"{dag_id}.{name}: optional but not nullable"
        assert trigger(dag, {}) is not None  # the defaults pass the api-server's validation: Trigger works


def test_clients_sync_triggers_with_its_defaults_and_an_emptied_path(dags) -> None:
    dag = dags["fakturownia_clients_sync"]
    assert trigger(dag, {}) == {"full": False, "review_csv_path": None}
    assert trigger(dag, {"review_csv_path": None})["review_csv_path"] is None
    assert trigger(dag, {"review_csv_path": "exports/"})["review_csv_path"] == "exports/"


def test_list_params_are_multi_selects_of_the_allowed_values_and_may_be_emptied(dags) -> None:
    for (dag_id, name), allowed in LIST_PARAMS.items():
        dag = dags[dag_id]
        schema = dag.params.get_param(name).schema
        assert "array" in types(schema) and "null" in types(schema)
        assert schema["examples"] == list(allowed)  # what the form offers in its multi-select
        assert schema["items"] == {"type": "string", "enum": list(allowed)}
        for emptied in (None, []):  # the form sends null for an emptied multi-select; the CLI may send []
            assert trigger(dag, {name: emptied})[name] == emptied
        assert trigger(dag, {name: [allowed[-1]]})[name] == [allowed[-1]]
    for dag_id, dag in dags.items():  # no other list Param in free text
        for name, param in dag.params.items():
            if "array" in types(param.schema):
                assert (dag_id, name) in LIST_PARAMS or "examples" in param.schema, f"{dag_id}.{name}"


@pytest.mark.parametrize(
    ("conf", "name", "typo"),
    [
        ({"invoice_kinds": ["vat", "vta"]}, "invoice_kinds", "'vta' is not one of"),
        ({"entities": ["deals"]}, "entities", "'deals' is not one of"),
        ({"window": "fortnight"}, "window", "'fortnight' is not one of"),
        ({"date_from": "2024-13-01"}, "date_from", "'2024-13-01'"),
    ],
)
def test_a_typo_is_refused_naming_the_param_and_the_value(dags, conf, name, typo) -> None:
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError) as info:
        trigger(dags["fakturownia_backfill"], conf)
    first_line = str(info.value).splitlines()[0]
    assert first_line.startswith(f"Invalid input for param {name}: ") and typo in first_line


def test_backfill_windows_are_labelled_by_their_dates(dags) -> None:
    template = dags["fakturownia_backfill"].get_task("backfill_window").map_index_template
    task = SimpleNamespace(op_kwargs={"window": {"date_from": "2024-01-01", "date_to": "2024-01-31"}})
    assert jinja2.Template(template).render(task=task) == "2024-01-01..2024-01-31"


def test_every_summary_is_one_xcom_and_every_api_task_holds_a_pool(dags) -> None:
    for dag_id, dag in dags.items():
        for task in dag.tasks:
            multiple = getattr(task, "multiple_outputs", None)
            if multiple is None:  # a mapped task keeps it with its partial arguments
                multiple = task.partial_kwargs.get("multiple_outputs", False)
            assert multiple is False, f"{dag_id}.{task.task_id} splits its result into one XCom per key"
            if dag_id in OUR_DAGS and task.task_id not in NO_API_TASKS:
                assert task.pool in API_POOLS, f"{dag_id}.{task.task_id} calls an API outside the API pools"
    for dag_id in OUR_DAGS:
        assert dags[dag_id].get_task("check_setup").pool in API_POOLS


def test_integration_check_reads_each_api_under_its_pool_and_always_reports(dags) -> None:
    dag = dags["fakturownia_integration_check"]
    pools = {task.task_id: task.pool for task in dag.tasks}
    assert pools["check_fakturownia"] == "fakturownia_api" and pools["check_crm"] == "sugester_api"
    assert dag.get_task("report").trigger_rule == "all_done"  # a side whose task failed is reported, not lost
    assert trigger(dag, {})["register_webhooks"] is False  # the form triggers with its defaults


def window(**counts: Any) -> dict[str, Any]:
    return {"invoices_seen": 0, "deals_created": 0, "deals_updated": 0, "deals_unchanged": 0, **counts}


def test_backfill_report_reconciles_and_shows_every_count() -> None:
    windows = [
        window(
            invoices_seen=10,
            deals_created=4,
            deals_unchanged=1,
            skipped_cancelled=1,
            skipped_by_kind={"proforma": 2},
            quarantined_by_reason={"ambiguous_email": 2},
        ),
        window(),  # a window with no invoice: its zeros count too
    ]
    clients = {"created_in_crm": 3, "created_in_fakturownia": 1, "clients_linked": 5, "review_by_reason": {}}
    report = report_backfill(windows, None, clients=clients)
    assert report["windows"] == 2 and report["dry_run"] is False
    parts = ("deals_created", "deals_recovered", "deals_updated", "deals_unchanged")
    parts += ("invoices_skipped", "invoices_quarantined", "deals_deferred")
    assert report["invoices_seen"] == sum(report[key] for key in parts) == 10
    assert (report["invoices_skipped"], report["invoices_quarantined"], report["not_accounted"]) == (3, 2, 0)
    assert report["deals_updated"] == 0 and report["skipped_cost"] == 0  # zeros are shown, not dropped
    assert (report["crm_clients_created"], report["fakturownia_clients_created"]) == (3, 1)
    json.dumps(report)  # one plain XCom

    dry = report_backfill(None, {"clients": clients, "windows": windows, "skipped": 0, "totals": {}})
    assert dry["dry_run"] is True and {**dry, "dry_run": False} == report  # the same keys and counts

    empty = report_backfill(None, None)
    assert empty["windows"] == 0 and empty["invoices_seen"] == 0 and empty["not_accounted"] == 0

    unaccounted = report_backfill([window(invoices_seen=3, deals_created=1)], None)
    assert unaccounted["not_accounted"] == 2  # a difference is shown, never papered over


SETUP_PROBE = """
import json, sys
from scripts import airflow_setup
sandbox = json.loads(sys.argv[1])
first = airflow_setup.prepare(sandbox, migrate=False)
from airflow.models import Connection, Pool, Variable
from airflow.utils.session import create_session
with create_session() as session:
    conn = session.query(Connection).filter(Connection.conn_id == "fakturownia_default").one()
    conn.host = "https://edited-by-user.fakturownia.pl"
    session.query(Pool).filter(Pool.pool == "sugester_api").one().slots = 1
    session.query(Pool).filter(Pool.pool == "fakturownia_api").delete()
Variable.set("fakturownia_sync_config", json.dumps({"edited": True}))
second = airflow_setup.prepare(sandbox, migrate=False)
with create_session() as session:
    conns = {c.conn_id: c.host for c in session.query(Connection)}
    pools = {p.pool: p.slots for p in session.query(Pool)}
print(json.dumps({"first": first, "second": second, "conns": conns, "pools": pools,
                  "variable": Variable.get("fakturownia_sync_config")}))
"""


def test_setup_creates_only_what_is_missing(airflow_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "airflow_home"  # a throw-away copy of the session's migrated metadata DB
    home.mkdir()
    for name in ("airflow.cfg", "airflow.db"):
        if (Path(airflow_env["AIRFLOW_HOME"]) / name).exists():
            shutil.copy(Path(airflow_env["AIRFLOW_HOME"]) / name, home / name)
    env = {**airflow_env, "AIRFLOW_HOME": str(home)}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    sandbox = {
        "fakturownia_url": "http://127.0.0.1:1",
        "sugester_url": "http://127.0.0.1:2",
        "fakturownia_token": "t-f",
        "sugester_token": "t-s",
    }
    result = subprocess.run(
        [sys.executable, "-c", SETUP_PROBE, json.dumps(sandbox)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    created = {"fakturownia_default": "created", "sugester_default": "created"}
    assert found["first"] == {
        "connections": created,
        "variable": "created",
        "pools": {"sugester_api": "created", "fakturownia_api": "created"},
    }
    assert found["second"] == {
        "connections": {"fakturownia_default": "kept", "sugester_default": "kept"},
        "variable": "kept",
        "pools": {"sugester_api": "kept", "fakturownia_api": "created"},
    }
    assert found["conns"]["fakturownia_default"] == "https://edited-by-user.fakturownia.pl"
    assert found["conns"]["sugester_default"] == "http://127.0.0.1:2"
    assert json.loads(found["variable"]) == {"edited": True}
    assert found["pools"]["sugester_api"] == 1  # the user's smaller pool is not grown back or reset
    assert found["pools"]["fakturownia_api"] == 2  # a deleted pool is created again
