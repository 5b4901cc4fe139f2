"""Opening the state DB: the connection, the schema migrations, and the upsert every table group uses.

Works on SQLite (the default, a file under `$AIRFLOW_HOME`) and PostgreSQL; the schema is created and
upgraded by Alembic migrations on open, recorded in its own version table so the state can share a
database with other applications. A database that this code cannot use (a newer schema, an unreachable
server, an SQLite path that is read-only or in a missing folder) fails on open with a `StateDbError`
that says what to do.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from fakturownia_sync.state.errors import StateDbTooNew, check_sqlite_folder, explain, safe_url, unreachable

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "fakturownia_sync_alembic_version"
MIGRATION_LOCK_KEY = 0x66616B74  # any constant shared by all workers of this project
MIGRATION_ATTEMPTS = 5


# The claim time of a pending create whose attempt the server answered (so it can no longer land): older than any
# take-over window, so that a look-up decides at once whether to send it again (`deal_writer`, `claims`).
ATTEMPT_ENDED = datetime(2000, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Who did something (a decision, a retry asked for) is stored in 250 characters: the names Airflow's auth
# managers give are far shorter, and PostgreSQL refuses a longer value where SQLite would keep it.
PERSON_NAME_LENGTH = 250


def clip_name(name: str) -> str:
    return name[:PERSON_NAME_LENGTH]


def default_state_url() -> str:
    """An SQLite file under `$AIRFLOW_HOME` (or the working directory), used when no URL is configured."""
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.cwd())
    return f"sqlite:///{home / 'fakturownia_sync_state.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _migrations_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["version_table"] = VERSION_TABLE
    return config


class StoreEngine:
    """The connection to the state DB; every table group of `StateStore` builds on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @property
    def safe_url(self) -> str:
        """The URL as it may be printed: without the password."""
        return safe_url(self.url)

    def migrate(self) -> None:
        """Upgrade to the newest schema. Safe when several workers open a new database at the same moment:
        PostgreSQL serialises them with an advisory lock; on SQLite the loser of the race retries and
        finds the schema already there."""
        check_sqlite_folder(self.url)
        try:
            with self.engine.connect():
                pass
        except DBAPIError as exc:
            raise unreachable(self.url, exc) from exc
        config = _migrations_config()
        for attempt in range(1, MIGRATION_ATTEMPTS + 1):
            try:
                with self.engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    self._refuse_newer_schema(connection, config)
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                return
            except DBAPIError as exc:
                explained = explain(self.url, exc)
                if explained is not None:
                    raise explained from exc
                if attempt == MIGRATION_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)

    def _refuse_newer_schema(self, connection: Connection, config: Config) -> None:
        """An older version of this code meeting a newer state DB must stop before Alembic says only
        "Can't locate revision": the remedy is to upgrade the code (or use another database)."""
        current = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_heads()
        script = ScriptDirectory.from_config(config)
        known = {revision.revision for revision in script.walk_revisions()}
        for revision in current:
            if revision not in known:
                raise StateDbTooNew(self.safe_url, revision)

    def close(self) -> None:
        self.engine.dispose()

    def _upsert(self, change: Any, add: Any) -> None:
        """Update the row, or insert it when there is none. Two writers may both find none: the loser's
        insert hits the unique key, and it updates the winner's row instead of failing."""
        with self.engine.begin() as conn:
            if conn.execute(change).rowcount:
                return
            try:
                with conn.begin_nested():
                    conn.execute(add)
                return
            except IntegrityError:
                pass
        with self.engine.begin() as conn:
            conn.execute(change)
