"""Invoice → deal links: one row per invoice whose deal exists, with what the deal was last written as.

The primary key on `invoice_id` keeps an invoice to one deal and the unique `deal_id` keeps one CRM deal from
being linked to two invoices. A row is written only once the deal exists; the create before it is claimed in
`create_claims` like every create (target `crm_deal`, key `invoice:<id>`: `claims.create_under_claim`), and the
link is written before that claim is confirmed, so a confirmed claim always has its link.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from fakturownia_sync.state.engine import StoreEngine, utcnow
from fakturownia_sync.state.schema import invoice_corrections, invoice_deals


@dataclass(frozen=True)
class DealLink:
    invoice_id: int
    deal_id: int
    payload_hash: str | None  # the hash of the deal as last written or found (`deal_mapping.payload_hash`)
    invoice_updated_at: datetime | None
    shape_fingerprint: str | None = None  # the deal-shaping config the deal was last written under
    deal_deleted_at: datetime | None = None  # set once the deal was found deleted in the CRM: never written again


@dataclass(frozen=True)
class CorrectionRow:
    """A correction invoice's difference to the invoice it corrects (negative for a price cut)."""

    correction_id: int
    number: str
    price_net: Decimal
    price_gross: Decimal


def _deal_link(row: Any) -> DealLink:
    m = row._mapping
    return DealLink(
        invoice_id=m["invoice_id"],
        deal_id=m["deal_id"],
        payload_hash=m["payload_hash"],
        invoice_updated_at=m["invoice_updated_at"],
        shape_fingerprint=m["shape_fingerprint"],
        deal_deleted_at=m["deal_deleted_at"],
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

    def link_deal(
        self,
        invoice_id: int,
        deal_id: int,
        payload_hash: str | None,
        invoice_updated_at: datetime | None,
        shape_fingerprint: str | None = None,
    ) -> bool:
        """Record that CRM deal `deal_id` is the invoice's deal: one the sync created or found (its `payload_hash`
        says what it shows), or the deal an invoice was made from (`crm_deals_to_invoices`; no hash: the
        invoices → deals sync writes the invoice's view onto it once). True when that pair is linked now or was
        already; False when the invoice or the deal is linked to something else."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(invoice_deals).values(
                        invoice_id=int(invoice_id),
                        deal_id=int(deal_id),
                        payload_hash=payload_hash,
                        invoice_updated_at=invoice_updated_at,
                        shape_fingerprint=shape_fingerprint,
                        created_at=now,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            link = self.deal_link(invoice_id)
            return link is not None and link.deal_id == int(deal_id)

    def count_deal_links(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(invoice_deals)).scalar() or 0)

    def record_deal_payload(
        self,
        invoice_id: int,
        payload_hash: str,
        invoice_updated_at: datetime | None,
        shape_fingerprint: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"payload_hash": payload_hash, "invoice_updated_at": invoice_updated_at}
        if shape_fingerprint is not None:
            values["shape_fingerprint"] = shape_fingerprint
        with self.engine.begin() as conn:
            conn.execute(
                update(invoice_deals)
                .where(invoice_deals.c.invoice_id == invoice_id)
                .values(**values, updated_at=utcnow())
            )

    # Deal upkeep (`deal_upkeep`): re-applying a changed config, deals deleted in the CRM, corrections ----------

    def stamp_deal_shape(self, invoice_ids: Iterable[int], shape_fingerprint: str | None) -> None:
        """Record that these deals show the deal-shaping config `shape_fingerprint` (checked or rewritten);
        None marks them stale, to be re-read by the next re-apply pass."""
        ids = sorted({int(i) for i in invoice_ids})
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(
                    update(invoice_deals)
                    .where(invoice_deals.c.invoice_id.in_(ids[start : start + 500]))
                    .values(shape_fingerprint=shape_fingerprint)
                )

    def _stale(self, shape_fingerprint: str) -> Any:
        c = invoice_deals.c
        shape = or_(c.shape_fingerprint.is_(None), c.shape_fingerprint != shape_fingerprint)
        return (c.deal_deleted_at.is_(None), shape)

    def stale_deal_links(self, shape_fingerprint: str, limit: int) -> list[DealLink]:
        """Up to `limit` linked deals written under another deal-shaping config, oldest invoice first."""
        query = select(invoice_deals).where(*self._stale(shape_fingerprint))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(invoice_deals.c.invoice_id).limit(int(limit)))
            return [_deal_link(row) for row in rows]

    def count_stale_deal_links(self, shape_fingerprint: str) -> int:
        query = select(func.count()).select_from(invoice_deals).where(*self._stale(shape_fingerprint))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def live_deal_ids(self) -> dict[int, int]:
        """deal id → invoice id of every linked deal not known to be deleted in the CRM."""
        c = invoice_deals.c
        query = select(c.deal_id, c.invoice_id).where(c.deal_deleted_at.is_(None))
        with self.engine.connect() as conn:
            return {int(deal_id): int(invoice_id) for deal_id, invoice_id in conn.execute(query)}

    def mark_deal_deleted(self, invoice_id: int) -> bool:
        """Record that the invoice's deal is gone from the CRM; False when it was recorded already."""
        c = invoice_deals.c
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(invoice_deals)
                .where(c.invoice_id == int(invoice_id), c.deal_deleted_at.is_(None))
                .values(deal_deleted_at=utcnow())
            ).rowcount
        return bool(changed)

    def record_correction(
        self, correction_id: int, corrected_invoice_id: int, number: str, price_net: Decimal, price_gross: Decimal
    ) -> bool:
        """Remember a correction invoice's difference; True when this is new or differs from what was stored."""
        values = {
            "corrected_invoice_id": int(corrected_invoice_id),
            "number": number,
            "price_net": str(price_net),
            "price_gross": str(price_gross),
        }
        c = invoice_corrections.c
        with self.engine.begin() as conn:
            row = conn.execute(select(invoice_corrections).where(c.correction_id == int(correction_id))).first()
            if row is not None and all(row._mapping[key] == value for key, value in values.items()):
                return False
            if row is not None:
                conn.execute(
                    update(invoice_corrections)
                    .where(c.correction_id == int(correction_id))
                    .values(**values, recorded_at=utcnow())
                )
                return True
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(invoice_corrections).values(correction_id=int(correction_id), **values, recorded_at=utcnow())
                )
        except IntegrityError:  # a concurrent run recorded it first: theirs is the same document
            return False
        return True

    def forget_correction(self, correction_id: int) -> int | None:
        """Drop a correction that no longer applies (cancelled); returns the invoice it corrected, if stored."""
        c = invoice_corrections.c
        with self.engine.begin() as conn:
            corrected = conn.execute(
                select(c.corrected_invoice_id).where(c.correction_id == int(correction_id))
            ).scalar()
            conn.execute(delete(invoice_corrections).where(c.correction_id == int(correction_id)))
        return None if corrected is None else int(corrected)

    def corrections_of(self, invoice_id: int) -> list[CorrectionRow]:
        """The corrections recorded for an invoice, in the order they were issued (by id)."""
        c = invoice_corrections.c
        query = select(invoice_corrections).where(c.corrected_invoice_id == int(invoice_id)).order_by(c.correction_id)
        with self.engine.connect() as conn:
            return [
                CorrectionRow(
                    correction_id=int(row.correction_id),
                    number=row.number,
                    price_net=Decimal(row.price_net),
                    price_gross=Decimal(row.price_gross),
                )
                for row in conn.execute(query)
            ]
