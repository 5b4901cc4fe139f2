"""The CRM client mirror: backfill windows match buyers against it instead of reading the CRM each.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import Json, UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_client_mirror",
        sa.Column("client_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("record", Json, nullable=False),
        sa.Column("seen_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("crm_client_mirror")
