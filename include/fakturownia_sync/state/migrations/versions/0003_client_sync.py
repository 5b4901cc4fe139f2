"""Two-way client sync: Fakturownia client mirror, Fakturownia client claims, review list, conflicts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import Json, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fakturownia_client_mirror",
        sa.Column("client_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("updated_at", UtcDateTime),
        sa.Column("record", Json, nullable=False),
        sa.Column("seen_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "fakturownia_client_claims",
        sa.Column("claim_key", sa.String(320), primary_key=True),
        sa.Column("fakturownia_client_id", sa.BigInteger),
        sa.Column("claimed_by", sa.String(250), nullable=False),
        sa.Column("claimed_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "client_review",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(64), nullable=False, unique=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fakturownia_client_id", sa.BigInteger),
        sa.Column("crm_client_id", sa.BigInteger),
        sa.Column("fakturownia_record", Json),
        sa.Column("crm_record", Json),
        sa.Column("suggestions", Json),
        sa.Column("first_seen_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
        sa.Column("resolved_at", UtcDateTime),
    )
    op.create_table(
        "client_conflicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fakturownia_client_id", sa.BigInteger, nullable=False),
        sa.Column("crm_client_id", sa.BigInteger, nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("fakturownia_value", Json),
        sa.Column("crm_value", Json),
        sa.Column("fakturownia_base", Json),
        sa.Column("crm_base", Json),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("winner", sa.String(16), nullable=False),
        sa.Column("run_owner", sa.String(250), nullable=False),
        sa.Column("detected_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_client_conflicts_fakturownia_client_id", "client_conflicts", ["fakturownia_client_id"])


def downgrade() -> None:
    op.drop_index("ix_client_conflicts_fakturownia_client_id", table_name="client_conflicts")
    for table in ("client_conflicts", "client_review", "fakturownia_client_claims", "fakturownia_client_mirror"):
        op.drop_table(table)
