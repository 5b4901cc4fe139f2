"""Deal creates are claimed like every other create (`create_claims`, target `crm_deal`, key `invoice:<id>`).

Until now an invoice's deal create was claimed by a *pending* row of `invoice_deals` (state, claimed_by,
claimed_at). Those rows move into `create_claims` / `create_claim_keys` first, each as an unconfirmed claim with
its owner and time, so a create that may have landed is still looked up before anything is sent again (a row
without a claim time gets the migration's time: it is not taken over before the window). A key the new tables
hold already keeps its claim. Then the pending rows go, and with them the columns only they used: every row
left is a link (invoice → deal), so `deal_id` is required.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TARGET = "crm_deal"
KEY = "invoice:"

claims = sa.table(
    "create_claims",
    sa.column("id", sa.Integer),
    sa.column("target", sa.String),
    sa.column("claimed_by", sa.String),
    sa.column("claimed_at", UtcDateTime),
    sa.column("token", sa.String),
    sa.column("created_id", sa.BigInteger),
)
claim_keys = sa.table(
    "create_claim_keys", sa.column("target", sa.String), sa.column("claim_key", sa.String), sa.column("claim_id")
)


def _links(*extra: str) -> sa.TableClause:
    columns = [sa.column("invoice_id", sa.BigInteger), sa.column("deal_id", sa.BigInteger)]
    columns += [sa.column(name, UtcDateTime if name.endswith("_at") else sa.String) for name in extra]
    return sa.table("invoice_deals", *columns)


def upgrade() -> None:
    conn = op.get_bind()
    links = _links("state", "claimed_by", "claimed_at")
    held = {
        row.claim_key for row in conn.execute(sa.select(claim_keys.c.claim_key).where(claim_keys.c.target == TARGET))
    }
    now = datetime.now(UTC)
    for row in conn.execute(sa.select(links).where(links.c.state == "pending")).all():
        key = f"{KEY}{row.invoice_id}"
        if key in held:
            continue
        claim_id = conn.execute(
            sa.insert(claims)
            .values(
                target=TARGET,
                claimed_by=row.claimed_by or "migration/0009",
                claimed_at=row.claimed_at or now,
                token=uuid4().hex,
                created_id=None,
            )
            .returning(claims.c.id)
        ).scalar_one()
        conn.execute(sa.insert(claim_keys).values(target=TARGET, claim_key=key, claim_id=claim_id))
        held.add(key)
    conn.execute(sa.delete(links).where((links.c.state != "linked") | links.c.deal_id.is_(None)))
    with op.batch_alter_table("invoice_deals") as batch:
        batch.drop_column("state")
        batch.drop_column("claimed_by")
        batch.drop_column("claimed_at")
        batch.alter_column("deal_id", existing_type=sa.BigInteger, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("invoice_deals") as batch:
        batch.alter_column("deal_id", existing_type=sa.BigInteger, nullable=True)
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="linked"))
        batch.add_column(sa.Column("claimed_by", sa.String(250)))
        batch.add_column(sa.Column("claimed_at", UtcDateTime))
    conn = op.get_bind()
    links = _links("state", "claimed_by", "claimed_at", "created_at", "updated_at")
    unconfirmed = conn.execute(
        sa.select(claims.c.id, claims.c.claimed_by, claims.c.claimed_at, claim_keys.c.claim_key)
        .join(claim_keys, claim_keys.c.claim_id == claims.c.id)
        .where(claims.c.target == TARGET, claims.c.created_id.is_(None))
    ).all()
    linked = {row.invoice_id for row in conn.execute(sa.select(links.c.invoice_id))}
    now = datetime.now(UTC)
    for row in unconfirmed:
        invoice_id = int(row.claim_key.removeprefix(KEY))
        if invoice_id not in linked:
            conn.execute(
                sa.insert(links).values(
                    invoice_id=invoice_id,
                    state="pending",
                    claimed_by=row.claimed_by,
                    claimed_at=row.claimed_at,
                    created_at=now,
                    updated_at=now,
                )
            )
    conn.execute(sa.delete(claim_keys).where(claim_keys.c.target == TARGET))
    conn.execute(sa.delete(claims).where(claims.c.target == TARGET))
