"""Initial state schema: runs, cursors, invoice↔deal links, client links and claims, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import Json, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(250), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("finished_at", UtcDateTime),
        sa.Column("summary", Json),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_sync_runs_stream", "sync_runs", ["stream"])
    op.create_table(
        "sync_cursors",
        sa.Column("stream", sa.String(64), primary_key=True),
        sa.Column("value", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "invoice_deals",
        sa.Column("invoice_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("deal_id", sa.BigInteger, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payload_hash", sa.String(64)),
        sa.Column("invoice_updated_at", UtcDateTime),
        sa.Column("claimed_by", sa.String(250)),
        sa.Column("claimed_at", UtcDateTime),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "client_links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fakturownia_client_id", sa.BigInteger, nullable=False, unique=True),
        sa.Column("crm_client_id", sa.BigInteger, nullable=False, unique=True),
        sa.Column("evidence", sa.String(32), nullable=False),
        sa.Column("snapshot", Json),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "crm_client_claims",
        sa.Column("claim_key", sa.String(320), primary_key=True),
        sa.Column("crm_client_id", sa.BigInteger),
        sa.Column("claimed_by", sa.String(250), nullable=False),
        sa.Column("claimed_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("payload", Json),
        sa.Column("config_fingerprint", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_seen_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
        sa.Column("resolved_at", UtcDateTime),
        sa.UniqueConstraint("stream", "record_id", name="uq_quarantine_stream_record"),
    )


def downgrade() -> None:
    for table in ("quarantine", "crm_client_claims", "client_links", "invoice_deals", "sync_cursors"):
        op.drop_table(table)
    op.drop_index("ix_sync_runs_stream", table_name="sync_runs")
    op.drop_table("sync_runs")
