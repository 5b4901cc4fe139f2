"""Reports of `fakturownia_integration_check`: each run's findings, so the UI shows the latest without
calling the APIs itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from fakturownia_sync.state.engine import StoreEngine, utcnow
from fakturownia_sync.state.schema import integration_checks


class IntegrationChecksStore(StoreEngine):
    def save_integration_check(self, ok: bool, report: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(integration_checks).values(checked_at=utcnow(), ok=bool(ok), report=report)
                ).inserted_primary_key[0]
            )

    def latest_integration_check(self) -> dict[str, Any] | None:
        """{"id", "checked_at", "ok", "report"} of the newest check, or None before the first."""
        with self.engine.connect() as conn:
            row = conn.execute(select(integration_checks).order_by(integration_checks.c.id.desc()).limit(1)).first()
            return dict(row._mapping) if row else None
