"""Backfill ledger: which date windows a backfill has finished, so a re-trigger skips them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import Json, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backfill_windows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(250), nullable=False),
        sa.Column("date_from", sa.Date, nullable=False),
        sa.Column("date_to", sa.Date, nullable=False),
        sa.Column("summary", Json),
        sa.Column("finished_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("entity", "scope", "date_from", "date_to", name="uq_backfill_window"),
    )


def downgrade() -> None:
    op.drop_table("backfill_windows")
