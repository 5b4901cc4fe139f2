"""The assets: what each DAG task reads and writes, as Airflow parses it (no scheduler), URIs as Airflow
checks them with the provider's handler, and when a run records that it wrote to Fakturownia."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.context import OutletEventAccessors
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

from fakturownia_sync_airflow.assets import (
    CRM_CLIENTS,
    CRM_DEALS,
    FAKTUROWNIA_CLIENTS,
    FAKTUROWNIA_INVOICES,
    FAKTUROWNIA_WRITES,
    record_fakturownia_writes,
)
from fakturownia_sync_airflow.provider import normalize_fakturownia_uri, normalize_sugester_uri
from sandbox.process import SandboxProcess
from tests.airflow_harness import FAKTUROWNIA_TOKEN, SUGESTER_TOKEN, connections_env, dags_test
from tests.conftest import ROOT
from tests.test_deals_to_invoices import marked_deals

F_INVOICES, F_CLIENTS = "fakturownia://default/invoices", "fakturownia://default/clients"
C_DEALS, C_CLIENTS = "sugester://default/deals", "sugester://default/clients"
F_WRITES = "alias:fakturownia_sync_writes_to_fakturownia"

# (dag_id, task_id) → (inlets, outlets); every other task of these DAGs reads and writes no asset.
EXPECTED = {
    ("fakturownia_invoices_to_deals", "sync_invoices_to_deals"): ({F_INVOICES, F_CLIENTS}, {C_DEALS, C_CLIENTS}),
    ("fakturownia_clients_sync", "sync_clients"): ({F_CLIENTS, C_CLIENTS}, {C_CLIENTS, F_WRITES}),
    ("fakturownia_backfill", "sync_all_clients"): ({F_CLIENTS, C_CLIENTS}, {C_CLIENTS, F_WRITES}),
    ("fakturownia_backfill", "backfill_window"): ({F_INVOICES, F_CLIENTS}, {C_DEALS, C_CLIENTS}),
    ("fakturownia_backfill", "dry_run_backfill"): ({F_INVOICES, F_CLIENTS, C_CLIENTS}, set()),
    ("crm_deals_to_invoices", "sync_deals_to_invoices"): ({C_DEALS, C_CLIENTS}, {C_DEALS, F_WRITES}),
}
DAGS = {dag_id for dag_id, _ in EXPECTED}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The DAG files parsed by Airflow's DagBag in a clean process (the default account names)."""
    home = tmp_path_factory.mktemp("assets_home")
    script = (
        "import json; from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(ROOT / 'dags')!r})\n"
        "out = {'errors': {k: str(v) for k, v in bag.import_errors.items()}, 'tasks': {}}\n"
        "from airflow.sdk import AssetAlias\n"
        "shown = lambda xs: sorted(f'alias:{x.name}' if isinstance(x, AssetAlias) else x.uri for x in xs)\n"
        "for dag in bag.dags.values():\n"
        "    for t in dag.tasks:\n"
        "        out['tasks'][f'{dag.dag_id}/{t.task_id}'] = [shown(t.inlets), shown(t.outlets)]\n"
        "print(json.dumps(out))\n"
    )
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dag_files_parse_with_their_assets(dagbag: dict) -> None:
    assert dagbag["errors"] == {}


def test_each_task_declares_what_it_reads_and_writes(dagbag: dict) -> None:
    declared = {tuple(key.split("/")): (set(ins), set(outs)) for key, (ins, outs) in dagbag["tasks"].items()}
    assert {dag_id for dag_id, _ in declared} >= DAGS
    for key, (inlets, outlets) in declared.items():
        if key[0] in DAGS:
            assert (inlets, outlets) == EXPECTED.get(key, (set(), set())), key


def test_the_four_assets_have_the_design_uris() -> None:
    """What the webhook receiver and the asset schedules import (DESIGN.md "Assets and webhooks")."""
    assert [a.uri for a in (FAKTUROWNIA_INVOICES, FAKTUROWNIA_CLIENTS, CRM_DEALS, CRM_CLIENTS)] == [
        F_INVOICES,
        F_CLIENTS,
        C_DEALS,
        C_CLIENTS,
    ]
    assert f"alias:{FAKTUROWNIA_WRITES.name}" == F_WRITES


# URIs under Airflow's rules ----------------------------------------------------------------------------


def test_airflow_checks_both_schemes_with_the_providers_handler() -> None:
    handlers = ProvidersManagerTaskRuntime().asset_uri_handlers
    assert handlers["fakturownia"] is normalize_fakturownia_uri
    assert handlers["sugester"] is normalize_sugester_uri


@pytest.mark.parametrize(
    ("written", "uri"),
    [
        ("fakturownia://acme/invoices", "fakturownia://acme/invoices"),
        ("FAKTUROWNIA://Acme/clients/", "fakturownia://acme/clients"),
        ("sugester://ACME/deals#x", "sugester://acme/deals"),
        ("sugester://127.0.0.1:19602/clients", "sugester://127.0.0.1:19602/clients"),
    ],
)
def test_one_spelling_per_asset(written: str, uri: str) -> None:
    assert Asset(written).uri == uri


@pytest.mark.parametrize(
    ("written", "complaint"),
    [
        ("fakturownia://acme/deals", "expected one of: /invoices, /clients"),
        ("sugester://acme/invoices", "expected one of: /deals, /clients"),
        ("fakturownia:///invoices", "must name the account"),
        ("sugester://acme/deals?page=2", "expected one of: /deals, /clients"),
        ("fakturownia://acme", "expected one of: /invoices, /clients"),
    ],
)
def test_uris_naming_nothing_are_refused_at_parse_time(written: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Asset(written)


def test_account_names_come_from_the_airflow_config(tmp_path: Path) -> None:
    """`[fakturownia_sync] fakturownia_account` / `crm_account`, here from the environment, lower-cased."""
    env = {
        "AIRFLOW_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "AIRFLOW__FAKTUROWNIA_SYNC__FAKTUROWNIA_ACCOUNT": "Acme",
        "AIRFLOW__FAKTUROWNIA_SYNC__CRM_ACCOUNT": "acme-crm",
    }
    script = (
        "from fakturownia_sync_airflow import assets as a\n"
        "print(' '.join(x.uri for x in (a.FAKTUROWNIA_INVOICES, a.FAKTUROWNIA_CLIENTS, a.CRM_DEALS, a.CRM_CLIENTS)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == [
        "fakturownia://acme/invoices",
        "fakturownia://acme/clients",
        "sugester://acme-crm/deals",
        "sugester://acme-crm/clients",
    ]


# When a run says it wrote to Fakturownia ----------------------------------------------------------------


def alias_events(accessors: OutletEventAccessors) -> list[tuple[str, dict]]:
    return [(e.dest_asset_key.uri, e.extra) for e in accessors[FAKTUROWNIA_WRITES].asset_alias_events]


def test_client_writes_to_fakturownia_are_recorded_on_the_clients_asset() -> None:
    accessors = OutletEventAccessors()
    summary = {"stream": "clients_sync", "created_in_fakturownia": 2, "updated_in_fakturownia": 1, "created_in_crm": 5}
    assert record_fakturownia_writes(accessors, summary) == [F_CLIENTS]
    assert alias_events(accessors) == [(F_CLIENTS, {"records_written": 3})]


def test_invoices_and_cards_made_from_deals_are_recorded_on_both_assets() -> None:
    accessors = OutletEventAccessors()
    summary = {"stream": "deals_to_invoices", "invoices_created": 1, "invoices_recovered": 1, "clients_created": 1}
    assert record_fakturownia_writes(accessors, summary) == [F_INVOICES, F_CLIENTS]
    assert alias_events(accessors) == [(F_INVOICES, {"records_written": 2}), (F_CLIENTS, {"records_written": 1})]


@pytest.mark.parametrize(
    "summary",
    [
        {"stream": "clients_sync", "created_in_fakturownia": 0, "updated_in_fakturownia": 0, "created_in_crm": 4},
        {"stream": "deals_to_invoices", "enabled": False, "invoices_created": 0, "clients_created": 0},
        {"stream": "invoices_to_deals", "clients_created": 3},  # CRM clients: not a Fakturownia write
    ],
)
def test_a_run_that_wrote_nothing_to_fakturownia_records_nothing(summary: dict) -> None:
    """Otherwise the client sync, scheduled on the Fakturownia clients asset, would start itself forever."""
    accessors = OutletEventAccessors()
    assert record_fakturownia_writes(accessors, summary) == []
    assert alias_events(accessors) == []


# A real run under `airflow dags test`, events read from the metadata DB -------------------------------------


def events_by_uri(home: Path, dag_id: str) -> Counter:
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        rows = db.execute(
            "SELECT asset.uri FROM asset_event JOIN asset ON asset.id = asset_event.asset_id "
            "WHERE asset_event.source_dag_id = ?",
            (dag_id,),
        ).fetchall()
    return Counter(uri for (uri,) in rows)


def test_deal_invoicing_records_fakturownia_invoices_only_when_it_made_some(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """The first run invoices two marked deals: an event on the Fakturownia invoices asset (which starts
    `fakturownia_invoices_to_deals`). The second finds nothing to invoice: no Fakturownia event at all."""
    home = Path(airflow_env["AIRFLOW_HOME"])
    dag_id = "crm_deals_to_invoices"
    tokens = {"fakturownia_token": FAKTUROWNIA_TOKEN, "sugester_token": SUGESTER_TOKEN}
    ports = {"fakturownia_port": 19690, "sugester_port": 19691}
    with SandboxProcess(seed=9, clients=40, invoices=60, crm_clients=30, **ports, **tokens) as sandbox:
        marked_deals(sandbox, 2)
        env = {**airflow_env, **connections_env(sandbox, tmp_path / "state.db")}  # the demo config: enabled
        before = events_by_uri(home, dag_id)
        first = dags_test(env, dag_id)
        after_first = events_by_uri(home, dag_id)
        second = dags_test(env, dag_id)
        after_second = events_by_uri(home, dag_id)
    assert first.returncode == 0 and second.returncode == 0, (first.stdout + first.stderr)[-3000:]
    first_events, second_events = after_first - before, after_second - after_first
    assert first_events[F_INVOICES] == 1
    assert first_events[C_DEALS] == 1  # the deals written back: a plain outlet
    assert second_events == Counter({C_DEALS: 1})
