"""Writing one CRM deal's Fakturownia invoice exactly once: create under claim, find by `oid`, link, write back.

Exactly one invoice per deal
    The create goes through `claims.create_under_claim` (target `FAKTUROWNIA_INVOICE`, key `deal:<id>`), and
    the invoice carries `oid` = the deal id with `oid_unique=yes`. A create whose answer was lost (or a worker
    killed between Fakturownia's answer and our commit) leaves the claim unconfirmed; the next attempt (this
    run at once, or a retry of it) looks the invoice up by `oid` before anything is sent again, and a refusal
    by `oid_unique` is settled the same way.

No loop, no echo
    The invoice is linked to its deal in the state DB's invoice ↔ deal links the moment Fakturownia answers,
    so `fakturownia_invoices_to_deals` updates that deal instead of creating a second one; an invoice it meets
    whose `oid` names a deal under one of our claims is linked to that deal even if we died before linking it
    (`deal_origin.link_invoice_made_from_deal`). The deal then gets the invoice's link and `external_ids`, and
    moves to `deal_invoicing.invoiced_status` when one is set. A deal that carries
    `external_ids.fakturownia_invoice_id`, or is linked to an invoice in the state DB, already has its invoice
    (it was made from one by `fakturownia_invoices_to_deals`, or invoiced by an earlier run): it is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fakturownia_sync.claims import FAKTUROWNIA_INVOICE, create_under_claim, deal_key, stale_cutoff
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY
from fakturownia_sync.errors import ApiNotFound, ApiRejected, RecordDeferred, RecordError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.invoice_from_deal import deal_oid
from fakturownia_sync.records import parse_timestamp
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of

if TYPE_CHECKING:
    from fakturownia_sync.deals_to_invoices import DealInvoicingSummary

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class DealInvoiceWriter:
    """The Fakturownia side of one `crm_deals_to_invoices` run: invoice creates under claims, and write-backs."""

    fakturownia: FakturowniaClient
    crm: SugesterClient
    store: StateStore
    summary: DealInvoicingSummary
    owner: str
    stale_claim_minutes: int
    clock: Callable[[], datetime]
    invoiced_status: int | None = None  # the CRM status an invoiced deal moves to, set by the run

    def has_invoice(self, deal: dict[str, Any]) -> bool:
        """True when the deal has its invoice already (the write-back an earlier run left unfinished is done
        now); False when it is to be invoiced."""
        deal_id = int(deal["id"])
        written = external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)
        claim = self.store.create_claim(FAKTUROWNIA_INVOICE, deal_key(deal_id))
        if claim is None:
            if written:
                self.summary.add("deals_already_invoiced")  # made from an invoice (or invoiced before this DB)
                return True
            if self.store.deal_link_by_deal(deal_id) is not None:
                self.summary.add("deals_from_invoices")  # the deal of an invoice: it has its invoice already
                return True
            return False
        if claim.created_id is None:
            return False
        if written == str(claim.created_id) and self.invoiced_status is None:
            self.summary.add("deals_already_invoiced")
            return True
        self._write_back(deal, claim.created_id)  # invoiced earlier; the write-back did not finish
        return True

    def create(self, deal: dict[str, Any], payload: dict[str, Any]) -> bool:
        """Create the deal's invoice from `payload` once, then write it back onto the deal; True once done,
        False while the create awaits confirmation (counted as `invoices_unconfirmed`)."""
        deal_id = int(deal["id"])
        stale_before = stale_cutoff(self.clock(), self.stale_claim_minutes)
        outcome = None
        for _attempt in range(2):  # a lost answer: our own claim, taken over at once and looked up by oid
            outcome = create_under_claim(
                self.store, FAKTUROWNIA_INVOICE, [deal_key(deal_id)], self.owner, stale_before=stale_before,
                find_existing=lambda: self._find_by_oid(deal_id),
                create=lambda: self._create(deal_id, payload),
            )  # fmt: skip
            if outcome.status != "unconfirmed":
                break
        assert outcome is not None
        if outcome.status == "held_by_other":
            raise RecordDeferred(f"deal {deal_id}: run {outcome.holder} is creating its invoice right now")
        if outcome.record_id is None:
            self.summary.add("invoices_unconfirmed")
            return False
        self._write_back(deal, outcome.record_id)
        return True

    def _create(self, deal_id: int, payload: dict[str, Any]) -> int:
        try:
            created = self.fakturownia.create_invoice(payload)
        except ApiRejected:
            existing = self._find_by_oid(deal_id)  # refused by oid_unique: an earlier attempt made it
            if existing is None:
                raise
            return existing
        invoice_id = int(created["id"])
        # Link at once, before the claim is confirmed: the invoices → deals sync must never make it a deal.
        self.store.link_deal(invoice_id, deal_id, None, parse_timestamp(created.get("updated_at")))
        self.summary.add("invoices_created")
        log.info("deal %s: invoice %s (%s) created", deal_id, invoice_id, created.get("number"))
        return invoice_id

    def _find_by_oid(self, deal_id: int) -> int | None:
        found = self.fakturownia.invoices_by_oid(deal_oid(deal_id))
        if len(found) > 1:
            ids = sorted(int(invoice["id"]) for invoice in found)
            raise RecordError("several_invoices_for_deal", f"deal {deal_id}: Fakturownia invoices {ids} all carry it")
        if not found:
            return None
        invoice_id = int(found[0]["id"])
        self.store.link_deal(invoice_id, deal_id, None, parse_timestamp(found[0].get("updated_at")))
        self.summary.add("invoices_recovered")
        return invoice_id

    def _write_back(self, deal: dict[str, Any], invoice_id: int) -> None:
        """Link the invoice to the deal in the state DB and on the deal: its link, external id and status."""
        deal_id = int(deal["id"])
        if not self.store.link_deal(invoice_id, deal_id, None, None):
            raise RecordError(
                "invoice_linked_elsewhere",
                f"deal {deal_id}: its invoice {invoice_id} is linked to another deal in the state DB",
            )
        fields: dict[str, Any] = {
            "url": self.fakturownia.invoice_url(invoice_id),
            "external_ids": {FAKTUROWNIA_INVOICE_KEY: str(invoice_id)},
        }
        if self.invoiced_status is not None:
            fields["status_id"] = self.invoiced_status
        try:
            self.crm.update_deal(deal_id, fields)
        except ApiNotFound:
            log.warning("deal %s was deleted in the CRM after its invoice %s was made", deal_id, invoice_id)
            return
        self.summary.add("deals_written_back")
