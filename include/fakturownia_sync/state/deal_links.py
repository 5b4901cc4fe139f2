"""Invoice → deal links: one row per invoice, claimed before its deal is created and confirmed after.

The primary key on `invoice_id` is what keeps two runs from both creating a deal for one invoice; the
unique `deal_id` keeps one CRM deal from being linked to two invoices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fakturownia_sync.state.engine import StoreEngine, utcnow
from fakturownia_sync.state.schema import invoice_deals


@dataclass(frozen=True)
class DealLink:
    invoice_id: int
    deal_id: int | None
    state: str
    payload_hash: str | None
    invoice_updated_at: datetime | None
    claimed_by: str | None
    claimed_at: datetime | None


def _deal_link(row: Any) -> DealLink:
    m = row._mapping
    return DealLink(
        invoice_id=m["invoice_id"],
        deal_id=m["deal_id"],
        state=m["state"],
        payload_hash=m["payload_hash"],
        invoice_updated_at=m["invoice_updated_at"],
        claimed_by=m["claimed_by"],
        claimed_at=m["claimed_at"],
    )


class DealLinksStore(StoreEngine):
    def deal_links(self, invoice_ids: Iterable[int]) -> dict[int, DealLink]:
        ids = list({int(i) for i in invoice_ids})
        links: dict[int, DealLink] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for row in conn.execute(select(invoice_deals).where(invoice_deals.c.invoice_id.in_(chunk))):
                    link = _deal_link(row)
                    links[link.invoice_id] = link
        return links

    def deal_link(self, invoice_id: int) -> DealLink | None:
        return self.deal_links([invoice_id]).get(int(invoice_id))

    def deal_link_by_deal(self, deal_id: int) -> DealLink | None:
        """The invoice linked to a CRM deal (either direction made it), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(invoice_deals).where(invoice_deals.c.deal_id == int(deal_id))).first()
        return _deal_link(row) if row else None

    def link_invoice_made_from_deal(self, invoice_id: int, deal_id: int, invoice_updated_at: datetime | None) -> bool:
        """Link an invoice created for a CRM deal to that deal (`crm_deals_to_invoices`), so the invoices →
        deals sync updates the deal instead of creating a second one. The payload hash is left empty: that
        sync's next run writes the invoice's view onto the deal once. False when the invoice or the deal is
        linked to something else already."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(invoice_deals).values(
                        invoice_id=int(invoice_id),
                        deal_id=int(deal_id),
                        state="linked",
                        payload_hash=None,
                        invoice_updated_at=invoice_updated_at,
                        created_at=now,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            link = self.deal_link(invoice_id)
            return link is not None and link.deal_id == int(deal_id)

    def pending_deal_links(self) -> list[DealLink]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(invoice_deals).where(invoice_deals.c.state == "pending"))
            return [_deal_link(row) for row in rows]

    def count_deal_links(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(invoice_deals)).scalar() or 0)

    def claim_invoice(self, invoice_id: int, owner: str, payload_hash: str) -> bool:
        """Record the intent to create this invoice's deal, before creating it.

        Returns False when a row already exists (someone linked or claimed it first): the unique key on
        `invoice_id` is what keeps two runs from both creating a deal.
        """
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(invoice_deals).values(
                        invoice_id=invoice_id,
                        state="pending",
                        payload_hash=payload_hash,
                        claimed_by=owner,
                        claimed_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            return False

    def take_over_claim(self, invoice_id: int, owner: str, payload_hash: str, *, stale_before: datetime) -> bool:
        """Take a pending claim that is ours (an earlier try of the same run) or older than `stale_before`."""
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(invoice_deals)
                .where(
                    invoice_deals.c.invoice_id == invoice_id,
                    invoice_deals.c.state == "pending",
                    (invoice_deals.c.claimed_by == owner) | (invoice_deals.c.claimed_at < stale_before),
                )
                .values(claimed_by=owner, claimed_at=now, payload_hash=payload_hash, updated_at=now)
            ).rowcount
        return bool(changed)

    def confirm_deal(
        self, invoice_id: int, deal_id: int, payload_hash: str | None, invoice_updated_at: datetime | None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(invoice_deals)
                .where(invoice_deals.c.invoice_id == invoice_id)
                .values(
                    deal_id=deal_id,
                    state="linked",
                    payload_hash=payload_hash,
                    invoice_updated_at=invoice_updated_at,
                    claimed_by=None,
                    claimed_at=None,
                    updated_at=utcnow(),
                )
            )

    def record_deal_payload(self, invoice_id: int, payload_hash: str, invoice_updated_at: datetime | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(invoice_deals)
                .where(invoice_deals.c.invoice_id == invoice_id)
                .values(payload_hash=payload_hash, invoice_updated_at=invoice_updated_at, updated_at=utcnow())
            )

    def release_claim(self, invoice_id: int) -> None:
        """Forget a pending claim whose deal was never created (e.g. the invoice is gone)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(invoice_deals).where(
                    invoice_deals.c.invoice_id == invoice_id, invoice_deals.c.state == "pending"
                )
            )
