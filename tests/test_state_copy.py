"""The state copy from SQLite to PostgreSQL: every row of every table, ids that keep counting, a refused
non-empty target, and no password in the output."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fakturownia_sync.claims import CRM_CLIENT, CRM_DEAL
from fakturownia_sync.state import StateStore
from fakturownia_sync.state.copy import StateCopyError, copy_state
from fakturownia_sync.state.schema import metadata

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-pw"


def fill(store: StateStore) -> None:
    """At least one row in every table, SQL NULLs in JSON columns included."""
    run_id = store.start_run("invoices", "dag/run1")
    store.finish_run(run_id, "success", {"deals_created": 2})
    store.start_run("invoices", "dag/run2")  # still running: summary is NULL
    store.set_cursor("invoices", datetime(2026, 3, 1, 12, tzinfo=UTC))
    store.record_window("invoices", "vat", date(2024, 1, 1), date(2024, 1, 31), {"deals_created": 4})
    store.link_deal(1, 100, "h1", datetime(2026, 3, 1, tzinfo=UTC))
    store.claim_create(CRM_DEAL, ["invoice:2"], "dag/run2")
    store.link_clients(7, 70, "nip", {"name": ["A", "A"]})
    store.link_clients(8, 80, "created")
    store.save_fakturownia_clients([({"id": 7, "name": "A"}, datetime(2026, 1, 1, tzinfo=UTC))])
    store.save_crm_clients([{"id": 70, "name": "A"}])
    store.sync_client_review(
        [{"subject": "crm:9", "reason": "possible_duplicate", "message": "resembles 7", "crm_client_id": 9}]
    )
    store.record_client_conflicts(
        [
            {
                "fakturownia_client_id": 7,
                "crm_client_id": 70,
                "field": "email",
                "fakturownia_value": "a@x.pl",
                "crm_value": "b@x.pl",
                "fakturownia_base": None,
                "crm_base": None,
                "policy": "fakturownia_wins",
                "winner": "fakturownia",
                "run_owner": "dag/run1",
            }
        ]
    )
    claim = store.claim_create(CRM_CLIENT, ["fakturownia:8", "nip:5261040828"], "dag/run1").claim
    store.confirm_create(claim.id, 80)
    store.claim_create(CRM_CLIENT, ["email:x@y.pl"], "dag/run2")
    store.quarantine("invoices", 9, "invalid_nip", "bad nip", {"id": 9}, "f1")
    store.record_correction(11, 1, "FK 1/03/2026", Decimal("-10.00"), Decimal("-12.30"))
    store.record_review_decision("crm:9", "ignore", "anna")
    store.save_integration_check(True, {"checks": []})


def rows(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = {
            table.name: [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(*table.primary_key))]
            for table in metadata.sorted_tables
        }
        found["sql nulls"] = [
            {"n": conn.execute(sa.text("SELECT count(*) FROM sync_runs WHERE summary IS NULL")).scalar()}
        ]
    engine.dispose()
    return found


def state_copy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.state_copy", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_state_copy_from_sqlite_to_postgres_is_exact(tmp_path: Path, postgres_url: str) -> None:
    source_url = f"sqlite:///{tmp_path / 'state.db'}"
    source = StateStore.open(source_url)
    fill(source)
    source.close()
    target_url = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth ignores the password

    copied = state_copy("--from", source_url, "--to", target_url, "--batch-size", "2")

    assert copied.returncode == 0, copied.stderr
    assert PASSWORD not in copied.stdout + copied.stderr and "postgres:***@" in copied.stdout
    assert "client_links" in copied.stdout and "2 →         2" in copied.stdout
    expected = rows(source_url)
    assert all(expected[table.name] for table in metadata.sorted_tables), "the fixture leaves a table empty"
    assert rows(postgres_url) == expected
    assert expected["sql nulls"] == [{"n": 1}]


def test_copied_ids_keep_counting_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    source_url = f"sqlite:///{tmp_path / 'state.db'}"
    source = StateStore.open(source_url)
    fill(source)
    source.close()
    counts = copy_state(source_url, postgres_url)
    assert {count.table: count.target_rows for count in counts}["sync_runs"] == 2
    target = StateStore.open(postgres_url)
    assert target.start_run("invoices", "dag/run3") == 3
    assert target.link_clients(9, 90, "email") is True
    assert target.claim_create(CRM_CLIENT, ["nip:1132191233"], "dag/run3").claim.id == 4
    target.quarantine("invoices", 10, "invalid_nip", "bad nip", {"id": 10}, "f1")
    assert len(target.open_quarantine("invoices")) == 2
    target.close()


def test_a_non_empty_target_is_refused_unless_forced(tmp_path: Path, postgres_url: str) -> None:
    source_url = f"sqlite:///{tmp_path / 'state.db'}"
    source = StateStore.open(source_url)
    fill(source)
    source.close()
    target = StateStore.open(postgres_url)
    target.start_run("clients", "elsewhere")
    target.close()

    refused = state_copy("--from", source_url, "--to", postgres_url)
    assert refused.returncode == 1
    assert "already holds state (sync_runs)" in refused.stderr and "--force" in refused.stderr
    assert rows(postgres_url)["sync_runs"][0]["owner"] == "elsewhere"

    forced = state_copy("--from", source_url, "--to", postgres_url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert rows(postgres_url) == rows(source_url)


def test_a_copy_onto_itself_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with pytest.raises(StateCopyError, match="the same database"):
        copy_state(url, url)
