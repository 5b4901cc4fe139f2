"""Read-only views of the whole state for people: what the integration page in the Airflow UI shows.

The sync engines read the state one record or one page at a time; a person wants it at a glance (the last
runs of every stream, the cursors and how far behind they are, the open quarantine by reason, the review
list a page at a time, how many clients each department holds). These queries live here, next to the
tables, so the page never holds SQL of its own. Every list is bounded: a state of years must still render.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from fakturownia_sync.state.engine import StoreEngine, utcnow
from fakturownia_sync.state.schema import (
    client_links,
    client_review,
    fakturownia_client_mirror,
    invoice_deals,
    quarantine,
    sync_cursors,
    sync_runs,
)

CHUNK = 500  # ids per IN (...) list, well under every database's limit


class OverviewStore(StoreEngine):
    def run_streams(self) -> list[str]:
        """Every stream that has run, by name (each one's newest runs: `RunsStore.runs_of`)."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(sync_runs.c.stream).distinct()).scalars())

    def cursor_lags(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every incremental cursor with its lag: how far behind `now` the next run will start reading."""
        now = now or utcnow()
        with self.engine.connect() as conn:
            rows = conn.execute(select(sync_cursors).order_by(sync_cursors.c.stream))
            return [{**row._mapping, "lag": now - row.value} for row in rows]

    def open_quarantine_summary(self) -> dict[tuple[str, str], int]:
        """How many entries are open, by (reason, stream)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(quarantine.c.reason, quarantine.c.stream, func.count())
                .where(quarantine.c.resolved_at.is_(None))
                .group_by(quarantine.c.reason, quarantine.c.stream)
            )
            return {(reason, stream): int(count) for reason, stream, count in rows}

    def open_quarantine_page(self, limit: int = 300) -> list[dict[str, Any]]:
        """Open entries by reason, then stream, oldest first within each; at most `limit` (payloads can be large)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(quarantine)
                .where(quarantine.c.resolved_at.is_(None))
                .order_by(quarantine.c.reason, quarantine.c.stream, quarantine.c.id)
                .limit(limit)
            )
            return [dict(row._mapping) for row in rows]

    def count_open_client_review(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(client_review.c.resolved_at.is_(None))).scalar_one())

    def open_client_review_page(self, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        """One page of the open review list, in the order entries were first seen."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(client_review)
                .where(client_review.c.resolved_at.is_(None))
                .order_by(client_review.c.id)
                .limit(limit)
                .offset(offset)
            )
            return [dict(row._mapping) for row in rows]

    def open_client_review_entry(self, subject: str) -> dict[str, Any] | None:
        """The open review entry of one subject (`fakturownia:<id>` / `crm:<id>`), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(client_review).where(client_review.c.subject == subject, client_review.c.resolved_at.is_(None))
            ).first()
            return dict(row._mapping) if row else None

    def crm_clients_linked_to(self, fakturownia_client_ids: Iterable[int]) -> dict[int, int]:
        """{Fakturownia client id: linked CRM client id} for those of the given ids that are linked."""
        return self._links_by(
            client_links.c.fakturownia_client_id, client_links.c.crm_client_id, fakturownia_client_ids
        )

    def fakturownia_clients_linked_to(self, crm_client_ids: Iterable[int]) -> dict[int, int]:
        """{CRM client id: linked Fakturownia client id} for those of the given ids that are linked."""
        return self._links_by(client_links.c.crm_client_id, client_links.c.fakturownia_client_id, crm_client_ids)

    def invoices_of_deals(self, deal_ids: Iterable[int]) -> dict[int, int]:
        """{CRM deal id: Fakturownia invoice id} for those of the given deals that are linked to an invoice."""
        return self._links_by(invoice_deals.c.deal_id, invoice_deals.c.invoice_id, deal_ids)

    def _links_by(self, key: Any, value: Any, ids: Iterable[int]) -> dict[int, int]:
        wanted = sorted({int(i) for i in ids})
        found: dict[int, int] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), CHUNK):
                rows = conn.execute(select(key, value).where(key.in_(wanted[start : start + CHUNK])))
                found.update({int(k): int(v) for k, v in rows})
        return found

    def department_usage(self) -> dict[str, dict[int | None, int]]:
        """How many clients each department holds, per side, from what the sync has read: Fakturownia's from
        the client mirror (every client card read), the CRM's from the last synced values of linked pairs
        (the CRM clients the sync knows). None counts the clients with no department."""
        f_department = fakturownia_client_mirror.c.record["department_id"].as_integer()
        crm_department = client_links.c.snapshot[("crm", "department_id")].as_integer()
        with self.engine.connect() as conn:
            fakturownia = conn.execute(select(f_department, func.count()).group_by(f_department))
            crm = conn.execute(
                select(crm_department, func.count())
                .where(client_links.c.snapshot["crm"].as_string().is_not(None))  # pairs not synced yet have no snapshot
                .group_by(crm_department)
            )
            return {
                "fakturownia": {dept: int(count) for dept, count in fakturownia},
                "crm": {dept: int(count) for dept, count in crm},
            }
