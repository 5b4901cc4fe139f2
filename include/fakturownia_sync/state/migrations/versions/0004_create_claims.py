"""Creates claimed on every evidence key of a company at once, so two processes cannot both create it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "create_claims",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("claimed_by", sa.String(250), nullable=False),
        sa.Column("claimed_at", UtcDateTime, nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("created_id", sa.BigInteger),
    )
    op.create_table(
        "create_claim_keys",
        sa.Column("target", sa.String(32), primary_key=True),
        sa.Column("claim_key", sa.String(320), primary_key=True),
        sa.Column("claim_id", sa.Integer, sa.ForeignKey("create_claims.id"), nullable=False),
    )
    op.create_index("ix_create_claim_keys_claim_id", "create_claim_keys", ["claim_id"])


def downgrade() -> None:
    op.drop_index("ix_create_claim_keys_claim_id", table_name="create_claim_keys")
    op.drop_table("create_claim_keys")
    op.drop_table("create_claims")
