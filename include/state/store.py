"""Reading and writing the sync state. One class, one short transaction per call.

Works on SQLite (the default, a file under `$AIRFLOW_HOME`) and PostgreSQL; the schema is created and
upgraded by Alembic migrations on open, recorded in its own version table so the state can share a
database with other applications.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from include.state.schema import (
    backfill_windows,
    client_links,
    crm_client_claims,
    invoice_deals,
    quarantine,
    sync_cursors,
    sync_runs,
)

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "fakturownia_sync_alembic_version"
MIGRATION_LOCK_KEY = 0x66616B74  # any constant shared by all workers of this project
MIGRATION_ATTEMPTS = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_state_url() -> str:
    """An SQLite file under `$AIRFLOW_HOME` (or the working directory), used when no URL is configured."""
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.cwd())
    return f"sqlite:///{home / 'fakturownia_sync_state.db'}"


@dataclass(frozen=True)
class DealLink:
    invoice_id: int
    deal_id: int | None
    state: str
    payload_hash: str | None
    invoice_updated_at: datetime | None
    claimed_by: str | None
    claimed_at: datetime | None


@dataclass(frozen=True)
class ClientLink:
    fakturownia_client_id: int
    crm_client_id: int
    evidence: str
    snapshot: dict[str, Any] | None


@dataclass(frozen=True)
class QuarantineEntry:
    stream: str
    record_id: str
    reason: str
    message: str
    payload: Any
    config_fingerprint: str | None
    attempts: int
    first_seen_at: datetime
    last_seen_at: datetime


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class StateStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @classmethod
    def open(cls, url: str | None = None) -> StateStore:
        """Connect and bring the schema up to date."""
        store = cls(url or default_state_url())
        store.migrate()
        return store

    def migrate(self) -> None:
        """Upgrade to the newest schema. Safe when several workers open a new database at the same moment:
        PostgreSQL serialises them with an advisory lock; on SQLite the loser of the race retries and
        finds the schema already there."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["version_table"] = VERSION_TABLE
        for attempt in range(1, MIGRATION_ATTEMPTS + 1):
            try:
                with self.engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                return
            except DBAPIError:
                if attempt == MIGRATION_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)

    def close(self) -> None:
        self.engine.dispose()

    # Runs ----------------------------------------------------------------------------------------------

    def start_run(self, stream: str, owner: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(sync_runs).values(stream=stream, owner=owner, status="running", started_at=utcnow())
            )
            return int(result.inserted_primary_key[0])

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any], error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(sync_runs)
                .where(sync_runs.c.id == run_id)
                .values(status=status, finished_at=utcnow(), summary=summary, error=error)
            )

    def last_run(self, stream: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(sync_runs).where(sync_runs.c.stream == stream).order_by(sync_runs.c.id.desc()).limit(1)
            ).first()
        return dict(row._mapping) if row else None

    # Cursors -------------------------------------------------------------------------------------------

    def get_cursor(self, stream: str) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(select(sync_cursors.c.value).where(sync_cursors.c.stream == stream)).scalar()

    def set_cursor(self, stream: str, value: datetime) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(sync_cursors).where(sync_cursors.c.stream == stream).values(value=value, updated_at=now)
            ).rowcount
            if not changed:
                conn.execute(insert(sync_cursors).values(stream=stream, value=value, updated_at=now))

    # Invoice ↔ deal links ------------------------------------------------------------------------------

    @staticmethod
    def _deal_link(row: Any) -> DealLink:
        m = row._mapping
        return DealLink(
            invoice_id=m["invoice_id"],
            deal_id=m["deal_id"],
            state=m["state"],
            payload_hash=m["payload_hash"],
            invoice_updated_at=m["invoice_updated_at"],
            claimed_by=m["claimed_by"],
            claimed_at=m["claimed_at"],
        )

    def deal_links(self, invoice_ids: Iterable[int]) -> dict[int, DealLink]:
        ids = list({int(i) for i in invoice_ids})
        links: dict[int, DealLink] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for row in conn.execute(select(invoice_deals).where(invoice_deals.c.invoice_id.in_(chunk))):
                    link = self._deal_link(row)
                    links[link.invoice_id] = link
        return links

    def deal_link(self, invoice_id: int) -> DealLink | None:
        return self.deal_links([invoice_id]).get(int(invoice_id))

    def pending_deal_links(self) -> list[DealLink]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(invoice_deals).where(invoice_deals.c.state == "pending"))
            return [self._deal_link(row) for row in rows]

    def count_deal_links(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(invoice_deals)).scalar() or 0)

    def claim_invoice(self, invoice_id: int, owner: str, payload_hash: str) -> bool:
        """Record the intent to create this invoice's deal, before creating it.

        Returns False when a row already exists (someone linked or claimed it first): the unique key on
        `invoice_id` is what keeps two runs from both creating a deal.
        """
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(invoice_deals).values(
                        invoice_id=invoice_id,
                        state="pending",
                        payload_hash=payload_hash,
                        claimed_by=owner,
                        claimed_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            return False

    def take_over_claim(self, invoice_id: int, owner: str, payload_hash: str, *, stale_before: datetime) -> bool:
        """Take a pending claim that is ours (an earlier try of the same run) or older than `stale_before`."""
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(invoice_deals)
                .where(
                    invoice_deals.c.invoice_id == invoice_id,
                    invoice_deals.c.state == "pending",
                    (invoice_deals.c.claimed_by == owner) | (invoice_deals.c.claimed_at < stale_before),
                )
                .values(claimed_by=owner, claimed_at=now, payload_hash=payload_hash, updated_at=now)
            ).rowcount
        return bool(changed)

    def confirm_deal(
        self, invoice_id: int, deal_id: int, payload_hash: str | None, invoice_updated_at: datetime | None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(invoice_deals)
                .where(invoice_deals.c.invoice_id == invoice_id)
                .values(
                    deal_id=deal_id,
                    state="linked",
                    payload_hash=payload_hash,
                    invoice_updated_at=invoice_updated_at,
                    claimed_by=None,
                    claimed_at=None,
                    updated_at=utcnow(),
                )
            )

    def record_deal_payload(self, invoice_id: int, payload_hash: str, invoice_updated_at: datetime | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(invoice_deals)
                .where(invoice_deals.c.invoice_id == invoice_id)
                .values(payload_hash=payload_hash, invoice_updated_at=invoice_updated_at, updated_at=utcnow())
            )

    def release_claim(self, invoice_id: int) -> None:
        """Forget a pending claim whose deal was never created (e.g. the invoice is gone)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(invoice_deals).where(
                    invoice_deals.c.invoice_id == invoice_id, invoice_deals.c.state == "pending"
                )
            )

    # Client links --------------------------------------------------------------------------------------

    def client_link(self, fakturownia_client_id: int) -> ClientLink | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(client_links).where(client_links.c.fakturownia_client_id == int(fakturownia_client_id))
            ).first()
        if not row:
            return None
        m = row._mapping
        return ClientLink(m["fakturownia_client_id"], m["crm_client_id"], m["evidence"], m["snapshot"])

    def crm_client_is_linked(self, crm_client_id: int) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(client_links.c.id).where(client_links.c.crm_client_id == int(crm_client_id))
                ).first()
                is not None
            )

    def link_clients(
        self, fakturownia_client_id: int, crm_client_id: int, evidence: str, snapshot: dict[str, Any] | None = None
    ) -> bool:
        """Link two clients; False when either side is already linked (the one-to-one rule held)."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(client_links).values(
                        fakturownia_client_id=fakturownia_client_id,
                        crm_client_id=crm_client_id,
                        evidence=evidence,
                        snapshot=snapshot,
                        created_at=now,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            return False

    # CRM client claims ---------------------------------------------------------------------------------

    def claim_crm_client(self, claim_key: str, owner: str) -> bool:
        """Record the intent to create a CRM client for `claim_key`; False when a claim already exists."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(crm_client_claims).values(claim_key=claim_key, claimed_by=owner, claimed_at=utcnow())
                )
            return True
        except IntegrityError:
            return False

    def crm_client_claim(self, claim_key: str) -> tuple[int | None, str, datetime] | None:
        """(CRM client id or None while unconfirmed, owner, claimed at) of a claim, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(crm_client_claims).where(crm_client_claims.c.claim_key == claim_key)).first()
        return (row.crm_client_id, row.claimed_by, row.claimed_at) if row else None

    def take_over_crm_client_claim(self, claim_key: str, owner: str, *, stale_before: datetime) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(crm_client_claims)
                    .where(
                        crm_client_claims.c.claim_key == claim_key,
                        crm_client_claims.c.crm_client_id.is_(None),
                        (crm_client_claims.c.claimed_by == owner) | (crm_client_claims.c.claimed_at < stale_before),
                    )
                    .values(claimed_by=owner, claimed_at=utcnow())
                ).rowcount
            )

    def release_crm_client_claim(self, claim_key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(crm_client_claims).where(
                    crm_client_claims.c.claim_key == claim_key, crm_client_claims.c.crm_client_id.is_(None)
                )
            )

    def confirm_crm_client(self, claim_key: str, crm_client_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(crm_client_claims)
                .where(crm_client_claims.c.claim_key == claim_key)
                .values(crm_client_id=crm_client_id)
            )

    # Backfill ledger -----------------------------------------------------------------------------------

    def finished_windows(self, entity: str, scope: str) -> set[tuple[date, date]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(backfill_windows.c.date_from, backfill_windows.c.date_to).where(
                    backfill_windows.c.entity == entity, backfill_windows.c.scope == scope
                )
            )
            return {(row.date_from, row.date_to) for row in rows}

    def record_window(self, entity: str, scope: str, date_from: date, date_to: date, summary: dict[str, Any]) -> None:
        """Mark a window finished (again, on a reprocess: the summary and time are replaced)."""
        key = (
            backfill_windows.c.entity == entity,
            backfill_windows.c.scope == scope,
            backfill_windows.c.date_from == date_from,
            backfill_windows.c.date_to == date_to,
        )
        with self.engine.begin() as conn:
            if not conn.execute(
                update(backfill_windows).where(*key).values(summary=summary, finished_at=utcnow())
            ).rowcount:
                conn.execute(
                    insert(backfill_windows).values(
                        entity=entity,
                        scope=scope,
                        date_from=date_from,
                        date_to=date_to,
                        summary=summary,
                        finished_at=utcnow(),
                    )
                )

    # Quarantine ----------------------------------------------------------------------------------------

    def quarantine(
        self,
        stream: str,
        record_id: str | int,
        reason: str,
        message: str,
        payload: Any,
        config_fingerprint: str | None,
    ) -> None:
        """Put a record aside with its reason; re-quarantining an entry updates it and counts the attempt."""
        record_id, now = str(record_id), utcnow()
        values = {"reason": reason, "message": message, "payload": payload, "config_fingerprint": config_fingerprint}
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(quarantine)
                .where(quarantine.c.stream == stream, quarantine.c.record_id == record_id)
                .values(**values, last_seen_at=now, resolved_at=None, attempts=quarantine.c.attempts + 1)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(quarantine).values(
                        stream=stream, record_id=record_id, attempts=1, first_seen_at=now, last_seen_at=now, **values
                    )
                )

    def resolve_quarantine(self, stream: str, record_id: str | int) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(quarantine)
                    .where(
                        quarantine.c.stream == stream,
                        quarantine.c.record_id == str(record_id),
                        quarantine.c.resolved_at.is_(None),
                    )
                    .values(resolved_at=utcnow())
                ).rowcount
            )

    def open_quarantine(self, stream: str) -> list[QuarantineEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(quarantine)
                .where(quarantine.c.stream == stream, quarantine.c.resolved_at.is_(None))
                .order_by(quarantine.c.id)
            )
            return [
                QuarantineEntry(
                    stream=m["stream"],
                    record_id=m["record_id"],
                    reason=m["reason"],
                    message=m["message"],
                    payload=m["payload"],
                    config_fingerprint=m["config_fingerprint"],
                    attempts=m["attempts"],
                    first_seen_at=m["first_seen_at"],
                    last_seen_at=m["last_seen_at"],
                )
                for m in (row._mapping for row in rows)
            ]

    def open_quarantine_counts(self, stream: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(quarantine.c.reason, func.count())
                .where(quarantine.c.stream == stream, quarantine.c.resolved_at.is_(None))
                .group_by(quarantine.c.reason)
            )
            return {reason: int(count) for reason, count in rows}


def stale_claim_cutoff(minutes: int = 15) -> datetime:
    """Claims older than this are taken to belong to a run that died."""
    return utcnow() - timedelta(minutes=minutes)
