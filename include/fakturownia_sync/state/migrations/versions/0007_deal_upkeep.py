"""Deal upkeep: the deal-shaping config each deal was written under, deals deleted in the CRM, corrections.

`invoice_deals.shape_fingerprint` lets a run find the deals written under an older `deal_amount`,
`department_map`, `no_department` or users pairing and re-apply the current one, a bounded batch per run
(null: written before this column, so re-read once). `invoice_deals.deal_deleted_at` records that the
linked deal is gone from the CRM, so it is reported and never written (nor recreated) again.
`invoice_corrections` holds each correction invoice's difference, keyed by the invoice it corrects, so the
corrected invoice's deal shows the amount after every correction however the two are met.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoice_deals") as batch:
        batch.add_column(sa.Column("shape_fingerprint", sa.String(32)))
        batch.add_column(sa.Column("deal_deleted_at", UtcDateTime))
    op.create_table(
        "invoice_corrections",
        sa.Column("correction_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("corrected_invoice_id", sa.BigInteger, nullable=False),
        sa.Column("number", sa.String(250), nullable=False),
        sa.Column("price_net", sa.String(40), nullable=False),
        sa.Column("price_gross", sa.String(40), nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_invoice_corrections_corrected_invoice_id", "invoice_corrections", ["corrected_invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_invoice_corrections_corrected_invoice_id", table_name="invoice_corrections")
    op.drop_table("invoice_corrections")
    with op.batch_alter_table("invoice_deals") as batch:
        batch.drop_column("deal_deleted_at")
        batch.drop_column("shape_fingerprint")
