"""Drop the per-key client claims: every client create is claimed on all its evidence keys (`create_claims`).

The old tables held one key per create (`crm_client_claims`, `fakturownia_client_claims`). Their rows move
into `create_claims` / `create_claim_keys` first, each as a claim on its one key with its owner, time and
created id, so nothing they promised is forgotten: a confirmed create is still found instead of made again
(an anonymous buyer's key gains the `buyer:` prefix the engines now claim it under), and an unconfirmed one
is still looked up before anything is created. A key the new tables hold already keeps its newer claim.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from uuid import uuid4

import sqlalchemy as sa
from alembic import op

from fakturownia_sync.state.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD_TABLES = (
    ("crm_client_claims", "crm_client_id", "crm_client"),
    ("fakturownia_client_claims", "fakturownia_client_id", "fakturownia_client"),
)


def _new_key(target: str, key: str) -> str:
    return f"buyer:{key}" if target == "crm_client" and key.startswith("anonymous:") else key


def upgrade() -> None:
    conn = op.get_bind()
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
    for table_name, id_column, target in OLD_TABLES:
        old = sa.table(
            table_name,
            sa.column("claim_key", sa.String),
            sa.column(id_column, sa.BigInteger),
            sa.column("claimed_by", sa.String),
            sa.column("claimed_at", UtcDateTime),
        )
        held = {
            row.claim_key
            for row in conn.execute(sa.select(claim_keys.c.claim_key).where(claim_keys.c.target == target))
        }
        for row in conn.execute(sa.select(old)).all():
            key = _new_key(target, row.claim_key)
            if key in held:
                continue
            claim_id = conn.execute(
                sa.insert(claims)
                .values(
                    target=target,
                    claimed_by=row.claimed_by,
                    claimed_at=row.claimed_at,
                    token=uuid4().hex,
                    created_id=row._mapping[id_column],
                )
                .returning(claims.c.id)
            ).scalar_one()
            conn.execute(sa.insert(claim_keys).values(target=target, claim_key=key, claim_id=claim_id))
            held.add(key)
        op.drop_table(table_name)


def downgrade() -> None:
    for table_name, id_column, _target in OLD_TABLES:
        op.create_table(
            table_name,
            sa.Column("claim_key", sa.String(320), primary_key=True),
            sa.Column(id_column, sa.BigInteger),
            sa.Column("claimed_by", sa.String(250), nullable=False),
            sa.Column("claimed_at", UtcDateTime, nullable=False),
        )
