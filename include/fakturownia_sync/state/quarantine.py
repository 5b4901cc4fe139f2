"""Records put aside with their reason, retried on later runs until they go through or are resolved."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from fakturownia_sync.state.engine import StoreEngine, clip_name, utcnow
from fakturownia_sync.state.schema import quarantine


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
    retry_requested_at: datetime | None = None  # a person asked for a try in the next run (UI)


class QuarantineStore(StoreEngine):
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
            .values(
                **values,
                last_seen_at=now,
                resolved_at=None,
                attempts=quarantine.c.attempts + 1,
                retry_requested_at=None,
                retry_requested_by=None,
            )
        )
        add = insert(quarantine).values(
            stream=stream, record_id=record_id, attempts=1, first_seen_at=now, last_seen_at=now, **values
        )
        self._upsert(change, add)

    def resolve_quarantine(self, stream: str, record_id: str | int) -> bool:
        return self._change_open_entry(stream, record_id, resolved_at=utcnow())

    def request_quarantine_retry(self, stream: str, record_id: str | int, requested_by: str) -> bool:
        """Have the next run try this open entry whatever its retry timer says; False if it is not open."""
        return self._change_open_entry(
            stream, record_id, retry_requested_at=utcnow(), retry_requested_by=clip_name(requested_by)
        )

    def _change_open_entry(self, stream: str, record_id: str | int, **values: Any) -> bool:
        """Set `values` on the entry if it is still open; False when there is none (resolved meanwhile)."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(quarantine)
                .where(
                    quarantine.c.stream == stream,
                    quarantine.c.record_id == str(record_id),
                    quarantine.c.resolved_at.is_(None),
                )
                .values(**values)
            )
            return bool(changed.rowcount)

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
            retry_requested_at=m["retry_requested_at"],
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
