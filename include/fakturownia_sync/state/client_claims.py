"""Per-key claims on client creates, the mechanism the engines use until they move to `claims.py`.

Two tables of one shape: `crm_client_claims` (a CRM client to create, keyed "fakturownia:<id>",
"nip:<NIP>" or "email:<address>") and `fakturownia_client_claims` (a Fakturownia client to create for a
CRM client). The created record's id column is null while the create is in flight or unconfirmed.
One create claims ONE key here, so two processes reaching one company by different evidence can both
claim it; the multi-key claims of `state/claims.py` close that gap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from fakturownia_sync.state.engine import StoreEngine, utcnow
from fakturownia_sync.state.schema import crm_client_claims, fakturownia_client_claims


class ClientClaimsStore(StoreEngine):
    def _claim(self, table: Any, claim_key: str, owner: str) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(claim_key=claim_key, claimed_by=owner, claimed_at=utcnow()))
            return True
        except IntegrityError:
            return False

    def _read_claim(self, table: Any, id_column: str, claim_key: str) -> tuple[int | None, str, datetime] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.claim_key == claim_key)).first()
        return (row._mapping[id_column], row.claimed_by, row.claimed_at) if row else None

    def _take_over_claim(self, table: Any, id_column: str, claim_key: str, owner: str, stale_before: datetime) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(table)
                    .where(
                        table.c.claim_key == claim_key,
                        table.c[id_column].is_(None),
                        (table.c.claimed_by == owner) | (table.c.claimed_at < stale_before),
                    )
                    .values(claimed_by=owner, claimed_at=utcnow())
                ).rowcount
            )

    def _release_claim(self, table: Any, id_column: str, claim_key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.claim_key == claim_key, table.c[id_column].is_(None)))

    def _confirm_claim(self, table: Any, id_column: str, claim_key: str, created_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.claim_key == claim_key).values({id_column: created_id}))

    def _unconfirmed_claims(self, table: Any, id_column: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.claim_key).where(table.c[id_column].is_(None)))
            return {row.claim_key for row in rows}

    def claim_crm_client(self, claim_key: str, owner: str) -> bool:
        """Record the intent to create a CRM client for `claim_key`; False when a claim already exists."""
        return self._claim(crm_client_claims, claim_key, owner)

    def crm_client_claim(self, claim_key: str) -> tuple[int | None, str, datetime] | None:
        """(CRM client id or None while unconfirmed, owner, claimed at) of a claim, or None."""
        return self._read_claim(crm_client_claims, "crm_client_id", claim_key)

    def take_over_crm_client_claim(self, claim_key: str, owner: str, *, stale_before: datetime) -> bool:
        return self._take_over_claim(crm_client_claims, "crm_client_id", claim_key, owner, stale_before)

    def release_crm_client_claim(self, claim_key: str) -> None:
        self._release_claim(crm_client_claims, "crm_client_id", claim_key)

    def confirm_crm_client(self, claim_key: str, crm_client_id: int) -> None:
        self._confirm_claim(crm_client_claims, "crm_client_id", claim_key, crm_client_id)

    def unconfirmed_crm_client_claims(self) -> set[str]:
        """Keys of CRM client creates whose outcome is not recorded yet (in flight, or a run died)."""
        return self._unconfirmed_claims(crm_client_claims, "crm_client_id")

    def claim_fakturownia_client(self, claim_key: str, owner: str) -> bool:
        """Record the intent to create a Fakturownia client for `claim_key`; False when a claim exists."""
        return self._claim(fakturownia_client_claims, claim_key, owner)

    def fakturownia_client_claim(self, claim_key: str) -> tuple[int | None, str, datetime] | None:
        """(Fakturownia client id or None while unconfirmed, owner, claimed at) of a claim, or None."""
        return self._read_claim(fakturownia_client_claims, "fakturownia_client_id", claim_key)

    def take_over_fakturownia_client_claim(self, claim_key: str, owner: str, *, stale_before: datetime) -> bool:
        return self._take_over_claim(fakturownia_client_claims, "fakturownia_client_id", claim_key, owner, stale_before)

    def release_fakturownia_client_claim(self, claim_key: str) -> None:
        self._release_claim(fakturownia_client_claims, "fakturownia_client_id", claim_key)

    def confirm_fakturownia_client(self, claim_key: str, fakturownia_client_id: int) -> None:
        self._confirm_claim(fakturownia_client_claims, "fakturownia_client_id", claim_key, fakturownia_client_id)

    def unconfirmed_fakturownia_client_claims(self) -> set[str]:
        return self._unconfirmed_claims(fakturownia_client_claims, "fakturownia_client_id")
