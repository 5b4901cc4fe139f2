"""The last version of every CRM client a full read has seen: what backfill windows match buyers against.

A backfill splits history into many windows, each a task of its own. Reading the whole CRM client list
in every window made client look-ups most of a backfill's calls, so the backfill reads it once (the client
step's full sync, or one pass when clients are not synced) and keeps it here; a window builds its index
from this table, and adds the CRM clients it creates, so later windows see them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Column, Table, delete, insert, select

from fakturownia_sync.state.engine import StoreEngine, utcnow
from fakturownia_sync.state.schema import Json, UtcDateTime, metadata

crm_client_mirror = Table(
    "crm_client_mirror",
    metadata,
    Column("client_id", BigInteger, primary_key=True, autoincrement=False),
    Column("record", Json, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
)


class CrmClientMirrorStore(StoreEngine):
    def crm_clients(self) -> list[dict[str, Any]]:
        """Every CRM client of the last full read, plus those created since by backfill windows."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(crm_client_mirror.c.record).order_by(crm_client_mirror.c.client_id))
            return [row.record for row in rows]

    def save_crm_clients(self, records: Iterable[dict[str, Any]], *, replace_all: bool = False) -> None:
        """Store these CRM clients; `replace_all` first forgets every other one (a full read saw them all)."""
        table, now = crm_client_mirror, utcnow()
        rows = [{"client_id": int(record["id"]), "record": record, "seen_at": now} for record in records]
        with self.engine.begin() as conn:
            if replace_all:
                conn.execute(delete(table))
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                if not replace_all:
                    conn.execute(delete(table).where(table.c.client_id.in_([row["client_id"] for row in chunk])))
                conn.execute(insert(table), chunk)
