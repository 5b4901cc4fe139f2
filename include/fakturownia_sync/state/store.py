"""Reading and writing the sync state. One class, one short transaction per call.

Works on SQLite (the default, a file under `$AIRFLOW_HOME`) and PostgreSQL; the schema is created and
upgraded by Alembic migrations on open, recorded in its own version table so the state can share a
database with other applications.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, bindparam, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from fakturownia_sync.state.schema import (
    backfill_windows,
    client_conflicts,
    client_links,
    client_review,
    crm_client_claims,
    fakturownia_client_claims,
    fakturownia_client_mirror,
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
        change = update(sync_cursors).where(sync_cursors.c.stream == stream).values(value=value, updated_at=now)
        self._upsert(change, insert(sync_cursors).values(stream=stream, value=value, updated_at=now))

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

    def all_client_links(self) -> list[ClientLink]:
        """Every link, for the two-way client sync, which matches whole client bases at once."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(client_links).order_by(client_links.c.id))
            return [
                ClientLink(m["fakturownia_client_id"], m["crm_client_id"], m["evidence"], m["snapshot"])
                for m in (row._mapping for row in rows)
            ]

    def set_client_snapshots(self, snapshots: dict[int, dict[str, Any]]) -> None:
        """Store the last synced field values of linked pairs (keyed by Fakturownia client id)."""
        if not snapshots:
            return
        now = utcnow()
        statement = (
            update(client_links)
            .where(client_links.c.fakturownia_client_id == bindparam("fid"))
            .values(snapshot=bindparam("snap"), updated_at=now)
        )
        rows = [{"fid": int(fid), "snap": snap} for fid, snap in snapshots.items()]
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 1000):
                conn.execute(statement, rows[start : start + 1000])

    def link_clients_many(self, links: list[tuple[int, int, str, dict[str, Any] | None]]) -> list[tuple[int, int]]:
        """Link many pairs (Fakturownia id, CRM id, evidence, snapshot) in one transaction; falls back to
        one at a time when a pair breaks the one-to-one rule (a concurrent run linked it). Returns the
        pairs that were linked."""
        if not links:
            return []
        now = utcnow()
        rows = [
            {
                "fakturownia_client_id": int(f),
                "crm_client_id": int(c),
                "evidence": evidence,
                "snapshot": snapshot,
                "created_at": now,
                "updated_at": now,
            }
            for f, c, evidence, snapshot in links
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(client_links), rows)
            return [(int(f), int(c)) for f, c, _e, _s in links]
        except IntegrityError:
            return [(int(f), int(c)) for f, c, e, snap in links if self.link_clients(int(f), int(c), e, snap)]

    # Client create claims -----------------------------------------------------------------------------
    # Two tables of one shape: `crm_client_claims` (a CRM client to create, keyed "fakturownia:<id>",
    # "nip:<NIP>" or "email:<address>") and `fakturownia_client_claims` (a Fakturownia client to create for a
    # CRM client). The created record's id column is null while the create is in flight or unconfirmed.

    def _claim(self, table: Any, claim_key: str, owner: str) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(claim_key=claim_key, claimed_by=owner, claimed_at=utcnow()))
            return True
        except IntegrityError:
            return False

    def _read_claim(self, table: Any, id_column: str, claim_key: str) -> tuple[int | None, str, datetime] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.claim_key == claim_key)).first()
        return (row._mapping[id_column], row.claimed_by, row.claimed_at) if row else None

    def _take_over_claim(self, table: Any, id_column: str, claim_key: str, owner: str, stale_before: datetime) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(table)
                    .where(
                        table.c.claim_key == claim_key,
                        table.c[id_column].is_(None),
                        (table.c.claimed_by == owner) | (table.c.claimed_at < stale_before),
                    )
                    .values(claimed_by=owner, claimed_at=utcnow())
                ).rowcount
            )

    def _release_claim(self, table: Any, id_column: str, claim_key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.claim_key == claim_key, table.c[id_column].is_(None)))

    def _confirm_claim(self, table: Any, id_column: str, claim_key: str, created_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.claim_key == claim_key).values({id_column: created_id}))

    def _unconfirmed_claims(self, table: Any, id_column: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.claim_key).where(table.c[id_column].is_(None)))
            return {row.claim_key for row in rows}

    def claim_crm_client(self, claim_key: str, owner: str) -> bool:
        """Record the intent to create a CRM client for `claim_key`; False when a claim already exists."""
        return self._claim(crm_client_claims, claim_key, owner)

    def crm_client_claim(self, claim_key: str) -> tuple[int | None, str, datetime] | None:
        """(CRM client id or None while unconfirmed, owner, claimed at) of a claim, or None."""
        return self._read_claim(crm_client_claims, "crm_client_id", claim_key)

    def take_over_crm_client_claim(self, claim_key: str, owner: str, *, stale_before: datetime) -> bool:
        return self._take_over_claim(crm_client_claims, "crm_client_id", claim_key, owner, stale_before)

    def release_crm_client_claim(self, claim_key: str) -> None:
        self._release_claim(crm_client_claims, "crm_client_id", claim_key)

    def confirm_crm_client(self, claim_key: str, crm_client_id: int) -> None:
        self._confirm_claim(crm_client_claims, "crm_client_id", claim_key, crm_client_id)

    def unconfirmed_crm_client_claims(self) -> set[str]:
        """Keys of CRM client creates whose outcome is not recorded yet (in flight, or a run died)."""
        return self._unconfirmed_claims(crm_client_claims, "crm_client_id")

    def claim_fakturownia_client(self, claim_key: str, owner: str) -> bool:
        """Record the intent to create a Fakturownia client for `claim_key`; False when a claim exists."""
        return self._claim(fakturownia_client_claims, claim_key, owner)

    def fakturownia_client_claim(self, claim_key: str) -> tuple[int | None, str, datetime] | None:
        """(Fakturownia client id or None while unconfirmed, owner, claimed at) of a claim, or None."""
        return self._read_claim(fakturownia_client_claims, "fakturownia_client_id", claim_key)

    def take_over_fakturownia_client_claim(self, claim_key: str, owner: str, *, stale_before: datetime) -> bool:
        return self._take_over_claim(fakturownia_client_claims, "fakturownia_client_id", claim_key, owner, stale_before)

    def release_fakturownia_client_claim(self, claim_key: str) -> None:
        self._release_claim(fakturownia_client_claims, "fakturownia_client_id", claim_key)

    def confirm_fakturownia_client(self, claim_key: str, fakturownia_client_id: int) -> None:
        self._confirm_claim(fakturownia_client_claims, "fakturownia_client_id", claim_key, fakturownia_client_id)

    def unconfirmed_fakturownia_client_claims(self) -> set[str]:
        return self._unconfirmed_claims(fakturownia_client_claims, "fakturownia_client_id")

    # Fakturownia client mirror ------------------------------------------------------------------------

    def fakturownia_clients(self) -> list[dict[str, Any]]:
        """Every Fakturownia client record the client sync has read (its last version)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(fakturownia_client_mirror.c.record).order_by(fakturownia_client_mirror.c.client_id)
            )
            return [row.record for row in rows]

    def save_fakturownia_clients(
        self, records: Iterable[tuple[dict[str, Any], datetime | None]], *, replace_all: bool = False
    ) -> None:
        """Store the given (record, updated_at) pairs; `replace_all` first forgets every other client
        (a full read saw the whole base, so a client missing from it was deleted in Fakturownia)."""
        table, now = fakturownia_client_mirror, utcnow()
        rows = [
            {"client_id": int(record["id"]), "updated_at": updated, "record": record, "seen_at": now}
            for record, updated in records
        ]
        with self.engine.begin() as conn:
            if replace_all:
                conn.execute(delete(table))
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                if not replace_all:
                    conn.execute(delete(table).where(table.c.client_id.in_([row["client_id"] for row in chunk])))
                conn.execute(insert(table), chunk)

    # Client review list --------------------------------------------------------------------------------

    def sync_client_review(self, entries: Iterable[dict[str, Any]]) -> tuple[int, int]:
        """Make the open review list exactly `entries` (dicts with the `client_review` columns, keyed by
        `subject`): new ones are opened, known ones refreshed, open ones not given any more are resolved
        (a later run found the data fixed). Returns (opened, resolved)."""
        table, now = client_review, utcnow()
        wanted = {entry["subject"]: entry for entry in entries}
        with self.engine.begin() as conn:
            known = {row.subject: row.resolved_at for row in conn.execute(select(table.c.subject, table.c.resolved_at))}
            fresh = [
                {**entry, "first_seen_at": now, "last_seen_at": now, "resolved_at": None}
                for subject, entry in wanted.items()
                if subject not in known
            ]
            reopened = sum(1 for subject in wanted if subject in known and known[subject] is not None)
            refresh = [
                {**{f"v_{k}": v for k, v in entry.items()}, "v_now": now}
                for subject, entry in wanted.items()
                if subject in known
            ]
            if refresh:
                columns = [k for k in next(iter(wanted.values())) if k != "subject"]
                statement = (
                    update(table)
                    .where(table.c.subject == bindparam("v_subject"))
                    .values(
                        **{k: bindparam(f"v_{k}") for k in columns}, last_seen_at=bindparam("v_now"), resolved_at=None
                    )
                )
                for start in range(0, len(refresh), 1000):
                    conn.execute(statement, refresh[start : start + 1000])
            for start in range(0, len(fresh), 1000):
                conn.execute(insert(table), fresh[start : start + 1000])
            gone = [subject for subject, resolved in known.items() if resolved is None and subject not in wanted]
            for start in range(0, len(gone), 1000):
                conn.execute(
                    update(table).where(table.c.subject.in_(gone[start : start + 1000])).values(resolved_at=now)
                )
        return len(fresh) + reopened, len(gone)

    def open_client_review(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(client_review).where(client_review.c.resolved_at.is_(None)).order_by(client_review.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def open_client_review_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(client_review.c.reason, func.count())
                .where(client_review.c.resolved_at.is_(None))
                .group_by(client_review.c.reason)
            )
            return {reason: int(count) for reason, count in sorted(rows)}

    # Client conflicts ----------------------------------------------------------------------------------

    def record_client_conflicts(self, conflicts: list[dict[str, Any]]) -> None:
        """Append settled field conflicts (dicts with the `client_conflicts` columns)."""
        if conflicts:
            now = utcnow()
            with self.engine.begin() as conn:
                conn.execute(insert(client_conflicts), [{**row, "detected_at": now} for row in conflicts])

    def client_conflicts(self, fakturownia_client_id: int | None = None) -> list[dict[str, Any]]:
        query = select(client_conflicts).order_by(client_conflicts.c.id)
        if fakturownia_client_id is not None:
            query = query.where(client_conflicts.c.fakturownia_client_id == int(fakturownia_client_id))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

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
        change = update(backfill_windows).where(*key).values(summary=summary, finished_at=utcnow())
        add = insert(backfill_windows).values(
            entity=entity, scope=scope, date_from=date_from, date_to=date_to, summary=summary, finished_at=utcnow()
        )
        self._upsert(change, add)

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
        change = (
            update(quarantine)
            .where(quarantine.c.stream == stream, quarantine.c.record_id == record_id)
            .values(**values, last_seen_at=now, resolved_at=None, attempts=quarantine.c.attempts + 1)
        )
        add = insert(quarantine).values(
            stream=stream, record_id=record_id, attempts=1, first_seen_at=now, last_seen_at=now, **values
        )
        self._upsert(change, add)

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

    @staticmethod
    def _quarantine_entry(m: Any) -> QuarantineEntry:
        return QuarantineEntry(
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

    def open_quarantine(self, stream: str) -> list[QuarantineEntry]:
        return list(self.iter_open_quarantine(stream))

    def iter_open_quarantine(self, stream: str, batch: int = 500) -> Iterator[QuarantineEntry]:
        """All open entries, read `batch` at a time (payloads can be large; history can be long)."""
        last_id = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(quarantine)
                    .where(quarantine.c.stream == stream, quarantine.c.resolved_at.is_(None), quarantine.c.id > last_id)
                    .order_by(quarantine.c.id)
                    .limit(batch)
                ).all()
            for row in rows:
                yield self._quarantine_entry(row._mapping)
            if len(rows) < batch:
                return
            last_id = rows[-1]._mapping["id"]

    def open_quarantine_for(self, stream: str, record_ids: Iterable[str | int]) -> dict[str, QuarantineEntry]:
        """The open entries of these records only (one page of a sweep), keyed by record id."""
        ids = [str(record_id) for record_id in record_ids]
        found: dict[str, QuarantineEntry] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(quarantine).where(
                        quarantine.c.stream == stream,
                        quarantine.c.resolved_at.is_(None),
                        quarantine.c.record_id.in_(ids[start : start + 500]),
                    )
                )
                for row in rows:
                    entry = self._quarantine_entry(row._mapping)
                    found[entry.record_id] = entry
        return found

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
