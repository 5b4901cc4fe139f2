"""Where a sync stands: its runs, its incremental cursors and the backfill windows it has finished."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select, update

from fakturownia_sync.state.engine import StoreEngine, utcnow
from fakturownia_sync.state.schema import backfill_windows, sync_cursors, sync_runs


class RunsStore(StoreEngine):
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

    def runs_of(self, stream: str, limit: int = 10) -> list[dict[str, Any]]:
        """The newest `limit` runs of one stream, newest first (how far its open lists grew: `alert_rules`)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(sync_runs).where(sync_runs.c.stream == stream).order_by(sync_runs.c.id.desc()).limit(limit)
            )
            return [dict(row._mapping) for row in rows]

    # Cursors -------------------------------------------------------------------------------------------

    def get_cursor(self, stream: str) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(select(sync_cursors.c.value).where(sync_cursors.c.stream == stream)).scalar()

    def set_cursor(self, stream: str, value: datetime) -> None:
        now = utcnow()
        change = update(sync_cursors).where(sync_cursors.c.stream == stream).values(value=value, updated_at=now)
        self._upsert(change, insert(sync_cursors).values(stream=stream, value=value, updated_at=now))

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
