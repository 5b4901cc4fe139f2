"""The state store on SQLite and PostgreSQL: migrations, unique keys, cursors, quarantine, and the errors
that say what to do when the state DB cannot be used."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from fakturownia_sync.errors import ConfigError
from fakturownia_sync.state import StateDbPathError, StateDbTooNew, StateDbUnreachable, StateStore
from fakturownia_sync.state.engine import MIGRATIONS, VERSION_TABLE
from fakturownia_sync.state.schema import metadata


def migrations_head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def test_migrations_build_exactly_the_declared_schema(store: StateStore) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == migrations_head()


def test_opening_twice_is_harmless(state_url: str) -> None:
    StateStore.open(state_url).close()
    again = StateStore.open(state_url)
    assert again.count_deal_links() == 0
    again.close()


def test_one_link_per_invoice_and_per_deal(store: StateStore) -> None:
    updated = datetime(2026, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert store.link_deal(1, 500, "h", updated) is True
    link = store.deal_link(1)
    assert (link.deal_id, link.payload_hash) == (500, "h")
    assert link.invoice_updated_at == updated and link.invoice_updated_at.tzinfo is not None
    assert store.link_deal(1, 500, "h2", None) is True  # the same pair again: linked already
    assert store.link_deal(1, 501, "h", None) is False  # the invoice has its deal
    assert store.link_deal(2, 500, "h", None) is False  # one CRM deal is never linked to two invoices
    assert store.deal_link(2) is None and store.count_deal_links() == 1


def test_cursor_round_trip_keeps_the_instant(store: StateStore) -> None:
    assert store.get_cursor("s") is None
    warsaw = datetime(2026, 7, 1, 12, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2)))
    store.set_cursor("s", warsaw)
    assert store.get_cursor("s") == warsaw
    store.set_cursor("s", warsaw + timedelta(hours=1))
    assert store.get_cursor("s") == warsaw + timedelta(hours=1)


def test_client_links_are_one_to_one(store: StateStore) -> None:
    assert store.link_clients(1, 100, "nip") is True
    assert store.client_link(1).crm_client_id == 100
    assert store.crm_client_is_linked(100) and not store.crm_client_is_linked(101)
    assert store.link_clients(1, 101, "email") is False
    assert store.link_clients(2, 100, "email") is False
    assert store.client_link(2) is None


def test_quarantine_counts_attempts_and_resolves(store: StateStore) -> None:
    payload = {"id": 9, "issue_date": "2025-13-45"}
    store.quarantine("inv", 9, "malformed_date", "bad date", payload, "f1")
    store.quarantine("inv", 9, "malformed_date", "bad date", payload, "f1")
    store.quarantine("inv", 10, "invalid_nip", "bad nip", {"id": 10}, "f1")
    [first, _] = store.open_quarantine("inv")
    assert (first.attempts, first.payload, first.reason) == (2, payload, "malformed_date")
    assert store.open_quarantine_counts("inv") == {"malformed_date": 1, "invalid_nip": 1}
    assert store.resolve_quarantine("inv", 9) is True
    assert store.resolve_quarantine("inv", 9) is False
    assert store.open_quarantine_counts("inv") == {"invalid_nip": 1}
    store.quarantine("inv", 9, "malformed_date", "again", payload, "f2")
    assert store.open_quarantine_counts("inv") == {"invalid_nip": 1, "malformed_date": 1}


def test_runs_record_status_and_summary(store: StateStore) -> None:
    run_id = store.start_run("inv", "dag/run")
    store.finish_run(run_id, "success", {"deals_created": 3})
    last = store.last_run("inv")
    assert (last["status"], last["summary"], last["owner"]) == ("success", {"deals_created": 3}, "dag/run")


def test_backfill_ledger(store: StateStore) -> None:
    scope = "vat,receipt"
    assert store.finished_windows("invoices", scope) == set()
    store.record_window("invoices", scope, date(2024, 1, 1), date(2024, 1, 31), {"deals_created": 4})
    store.record_window("invoices", scope, date(2024, 1, 1), date(2024, 1, 31), {"deals_created": 0})
    store.record_window("invoices", "vat", date(2024, 2, 1), date(2024, 2, 29), {})
    assert store.finished_windows("invoices", scope) == {(date(2024, 1, 1), date(2024, 1, 31))}


def test_upsert_survives_losing_the_insert_race(store: StateStore) -> None:
    """Two writers both find no row and both insert: the loser updates the winner's row instead of failing."""
    from sqlalchemy import insert, update

    from fakturownia_sync.state.schema import sync_cursors

    first = datetime(2026, 1, 1, tzinfo=UTC)
    store.set_cursor("s", first)
    matches_nothing = update(sync_cursors).where(sync_cursors.c.stream == "nope").values(value=first)
    duplicate = insert(sync_cursors).values(stream="s", value=first, updated_at=first)
    store._upsert(matches_nothing, duplicate)  # the insert hits the unique key; must not raise
    assert store.get_cursor("s") == first
    store.set_cursor("s", first + timedelta(days=1))
    assert store.get_cursor("s") == first + timedelta(days=1)


# What the state DB says when it cannot be used ------------------------------------------------------------


def test_an_older_version_meeting_a_newer_state_db_says_to_upgrade(state_url: str) -> None:
    StateStore.open(state_url).close()
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StateDbTooNew) as raised:
        StateStore.open(state_url)
    message = str(raised.value)
    assert "written by a newer version (revision 9999)" in message
    assert "upgrade the project or point fakturownia_sync_db elsewhere" in message
    assert raised.value.revision == "9999" and "Can't locate" not in message


def test_the_newer_version_error_never_shows_the_password(postgres_url: str) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:s3cret-pw@")  # trust auth ignores it
    StateStore.open(with_password).close()
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StateDbTooNew) as raised:
        StateStore.open(with_password)
    assert "s3cret-pw" not in str(raised.value) and "postgres:***@" in str(raised.value)


def test_a_state_db_in_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "no-such-folder" / "state.db"
    with pytest.raises(StateDbPathError) as raised:
        StateStore.open(f"sqlite:///{path}")
    assert str(path) in str(raised.value) and f"the folder {path.parent} does not exist" in str(raised.value)
    assert isinstance(raised.value, ConfigError) and not path.parent.exists()


def test_a_read_only_state_db_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()  # an empty database the migrations must write to; the tests run as root, so mode=ro it is
    with pytest.raises(StateDbPathError) as raised:
        StateStore.open(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert f"the state DB file {path} is read-only" in str(raised.value)
    assert raised.value.path == path


def test_an_unreachable_state_server_is_named_without_its_password() -> None:
    with pytest.raises(StateDbUnreachable) as raised:
        StateStore.open("postgresql+psycopg://someone:s3cret-pw@127.0.0.1:1/state?connect_timeout=2")
    message = str(raised.value)
    assert "cannot connect to the state DB at postgresql+psycopg://someone:***@127.0.0.1:1/state" in message
    assert "s3cret-pw" not in message


def test_a_very_long_user_name_is_kept_clipped_on_every_database(store: StateStore) -> None:
    """Who decided or asked for a retry comes from the auth manager; an absurdly long name must not lose the act."""
    name = "ktoś-" + "x" * 400
    store.record_review_decision("fakturownia:1", "ignore", name, 1, None)
    assert store.review_decision_audit()[0]["decided_by"] == name[:250]
    store.quarantine("invoices", 9, "malformed_date", "bad date", {"id": 9}, None)
    assert store.request_quarantine_retry("invoices", 9, name)
    assert store.open_quarantine("invoices")[0].retry_requested_at is not None


def test_of_two_people_deciding_on_what_they_both_saw_one_is_stored(state_url: str) -> None:
    """The check that nobody decided meanwhile is part of the insert: racing deciders cannot both replace it."""
    from concurrent.futures import ThreadPoolExecutor

    from fakturownia_sync.state.schema import client_review

    setup = StateStore.open(state_url)
    now = datetime(2026, 11, 26, tzinfo=UTC)
    with setup.engine.begin() as conn:
        conn.execute(
            client_review.insert().values(
                subject="fakturownia:5", reason="possible_duplicate", message="m", first_seen_at=now, last_seen_at=now
            )
        )
    stores = [StateStore.open(state_url) for _ in range(8)]
    try:
        with ThreadPoolExecutor(8) as pool:
            stored = list(
                pool.map(
                    lambda i: stores[i].record_review_decision(
                        "fakturownia:5", "ignore", f"person {i}", replacing=None
                    ),
                    range(8),
                )
            )
        assert sum(1 for decision_id in stored if decision_id is not None) == 1
        assert len(setup.pending_review_decisions()) == 1
        first = next(decision_id for decision_id in stored if decision_id is not None)
        # Who saw that decision may replace it; who did not, may not.
        assert setup.record_review_decision("fakturownia:5", "ignore", "late", replacing=None) is None
        assert setup.record_review_decision("fakturownia:5", "link", "informed", 5, 7, replacing=first) is not None
    finally:
        for one in [setup, *stores]:
            one.close()
