"""What people decide in the UI and what the integration check found.

`review_decisions` keeps every decision a person made on the client review list (link these two, they are
different, ignore), who made it and when; the client sync applies the unapplied ones and writes what it did
into `outcome`, so the table is also the audit list. `quarantine.retry_requested_*` marks an entry a person
asked to be tried in the next run. `integration_checks` holds each report of `fakturownia_integration_check`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import Json, UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("retry_requested_at", UtcDateTime))
        batch.add_column(sa.Column("retry_requested_by", sa.String(250)))
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("fakturownia_client_id", sa.BigInteger),
        sa.Column("crm_client_id", sa.BigInteger),
        sa.Column("decided_by", sa.String(250), nullable=False),
        sa.Column("decided_at", UtcDateTime, nullable=False),
        sa.Column("applied_at", UtcDateTime),
        sa.Column("outcome", sa.Text),
    )
    op.create_index("ix_review_decisions_subject", "review_decisions", ["subject"])
    op.create_table(
        "integration_checks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("checked_at", UtcDateTime, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("report", Json, nullable=False),
    )
    op.create_index("ix_integration_checks_checked_at", "integration_checks", ["checked_at"])


def downgrade() -> None:
    op.drop_index("ix_integration_checks_checked_at", table_name="integration_checks")
    op.drop_table("integration_checks")
    op.drop_index("ix_review_decisions_subject", table_name="review_decisions")
    op.drop_table("review_decisions")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("retry_requested_by")
        batch.drop_column("retry_requested_at")
