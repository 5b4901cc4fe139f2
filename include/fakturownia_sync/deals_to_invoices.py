"""CRM deals marked for invoicing become exactly one Fakturownia invoice each ("Dodaj fakturę"): the run.

Which deals
    Deals whose status is one of `deal_invoicing.statuses` (names or ids, resolved through the CRM's deal
    statuses at the start of the run; a name the CRM does not have fails the run in one sentence). A deal that
    carries `external_ids.fakturownia_invoice_id`, or is linked to an invoice in the state DB, already has its
    invoice (it was made from one by `fakturownia_invoices_to_deals`, or invoiced by an earlier run): it is
    left alone. So a deal never gets a second invoice and a second run writes nothing.

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
    (`deal_origin.link_invoice_made_from_deal`). The deal then gets the invoice's link and `external_ids`, and moves to
    `deal_invoicing.invoiced_status` when one is set.

Bad input, nothing lost
    A deal with no client, no or a negative price, an unknown currency, an unmapped department, or one that
    Fakturownia refuses (422) is quarantined (stream `deals_to_invoices`) with the reason and the deal; the run
    carries on. The CRM is read whole every run, so a fixed deal comes back with its new version and is
    retried; an unchanged one is retried when the config changed or every `quarantine_retry_minutes`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from fakturownia_sync.claims import FAKTUROWNIA_INVOICE, create_under_claim, deal_key, stale_cutoff
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.deal_clients import DealClients
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY
from fakturownia_sync.deal_statuses import resolve_statuses
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import (
    ApiAuthError,
    ApiNotFound,
    ApiRejected,
    ApiUnavailable,
    RecordDeferred,
    RecordError,
    SyncError,
)
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.ids import as_id
from fakturownia_sync.invoice_from_deal import check_deal, deal_oid, invoice_payload
from fakturownia_sync.quarantine_retry import nothing_new
from fakturownia_sync.records import parse_timestamp
from fakturownia_sync.redaction import redact
from fakturownia_sync.run_summary import ApiCalls, api_calls
from fakturownia_sync.state import QuarantineEntry, StateStore
from fakturownia_sync.sugester_client import SugesterClient, external_ids_of
from fakturownia_sync.timing import STALE_CLAIM_MINUTES

log = logging.getLogger(__name__)

STREAM = "deals_to_invoices"


class UnconfirmedInvoices(SyncError):
    """Some invoice creates could not be confirmed either way; the run fails so that its retry settles them."""


@dataclass
class DealInvoicingSummary:
    """What a run did, counted (an XCom value, a state-DB column, the demo's table)."""

    stream: str = STREAM
    status: str = "running"
    enabled: bool = False
    statuses: list[str] = field(default_factory=list)
    deals_seen: int = 0
    deals_marked: int = 0
    invoices_created: int = 0
    invoices_recovered: int = 0
    invoices_unconfirmed: int = 0
    deals_written_back: int = 0
    deals_already_invoiced: int = 0
    deals_from_invoices: int = 0
    deals_deferred: int = 0
    clients_linked: int = 0
    clients_created: int = 0
    quarantined_by_reason: Counter = field(default_factory=Counter)
    quarantine_retried: int = 0
    quarantine_resolved: int = 0
    quarantine_withdrawn: int = 0
    quarantine_open: dict[str, int] = field(default_factory=dict)
    api_calls: ApiCalls = field(default_factory=dict)  # see `run_summary.api_calls`
    duration_seconds: float = 0.0

    def add(self, name: str, amount: int = 1) -> None:
        setattr(self, name, getattr(self, name) + amount)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["quarantined_by_reason"] = dict(sorted(self.quarantined_by_reason.items()))
        return data


class DealsToInvoices:
    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        config: SyncConfig,
        *,
        owner: str,
        stale_claim_minutes: int = STALE_CLAIM_MINUTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        today: Callable[[], date] | None = None,
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.config = config
        self.settings = config.deal_invoicing
        self.departments = DepartmentMap(config)
        self.owner = owner
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self.today = today or (lambda: self.clock().astimezone().date())
        self.summary = DealInvoicingSummary(enabled=self.settings.enabled)
        self.clients = DealClients(
            fakturownia, crm, store, self.departments, self.summary.add,
            owner=owner, stale_claim_minutes=stale_claim_minutes, clock=clock,
        )  # fmt: skip
        self.invoiced_status: int | None = None
        self._secrets = (fakturownia.account.token, crm.account.token)
        self._api_calls_before = api_calls(fakturownia, crm)  # the clients may have served earlier runs

    # The run -------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        summary, started = self.summary, time.monotonic()
        if not self.settings.enabled:
            log.info(
                "Deal invoicing is off (deal_invoicing.enabled is false in Variable 'fakturownia_sync_config'): "
                "no deal is invoiced until a person turns it on."
            )
            summary.status = "disabled"
            run_id = self.store.start_run(STREAM, self.owner)
            self._finish(run_id, started)
            return summary.to_dict()
        wanted, self.invoiced_status = resolve_statuses(self.crm, self.config)
        summary.statuses = sorted(wanted.values())
        log.info(
            "Deal invoicing is on: deals in status %s become %s invoices%s.",
            ", ".join(repr(name) for name in summary.statuses),
            self.settings.invoice_kind,
            f", then move to status id {self.invoiced_status}" if self.invoiced_status is not None else "",
        )
        run_id = self.store.start_run(STREAM, self.owner)
        try:
            self._process(wanted)
            summary.status = "incomplete" if summary.deals_deferred or summary.invoices_unconfirmed else "success"
        except BaseException as exc:
            summary.status = "failed"
            self._finish(run_id, started, error=redact(str(exc), self._secrets))
            raise
        self._finish(run_id, started)
        if summary.invoices_unconfirmed:
            raise UnconfirmedInvoices(
                f"{summary.invoices_unconfirmed} invoice create(s) could not be confirmed; the task's retry "
                "looks them up by oid before creating anything again"
            )
        return summary.to_dict()

    def _finish(self, run_id: int, started: float, error: str | None = None) -> None:
        summary = self.summary
        summary.duration_seconds = round(time.monotonic() - started, 3)
        summary.api_calls = api_calls(self.fakturownia, self.crm, since=self._api_calls_before)
        summary.quarantine_open = self.store.open_quarantine_counts(STREAM)
        self.store.finish_run(run_id, summary.status, summary.to_dict(), error)

    def _process(self, wanted: dict[int, str]) -> None:
        quarantined = {entry.record_id: entry for entry in self.store.iter_open_quarantine(STREAM)}
        seen: set[str] = set()
        for deal in self.crm.iter_deals():
            self.summary.add("deals_seen")
            if as_id(deal.get("status_id")) not in wanted:
                continue
            self.summary.add("deals_marked")
            seen.add(str(deal.get("id")))
            entry = quarantined.get(str(deal.get("id")))
            if entry is not None:
                if nothing_new(entry, deal, self.config, self.clock()):
                    continue
                self.summary.add("quarantine_retried")
            self.handle(deal)
        for record_id, entry in quarantined.items():
            if record_id not in seen:
                self._recheck(record_id, entry, wanted)

    def _recheck(self, record_id: str, entry: QuarantineEntry, wanted: dict[int, str]) -> None:
        """A quarantined deal the scan did not meet in a marked status: re-read it; withdrawn when it is gone or
        no longer asks for an invoice, retried when it does."""
        deal_id = as_id(record_id)
        try:
            deal = self.crm.get_deal(deal_id) if deal_id is not None else None
        except ApiNotFound:
            deal = None
        if deal is not None and as_id(deal.get("status_id")) in wanted:
            self.summary.add("quarantine_retried")
            self.handle(deal)
        elif self.store.resolve_quarantine(STREAM, record_id):
            self.summary.add("quarantine_withdrawn")

    # One deal ------------------------------------------------------------------------------------------

    def handle(self, deal: dict[str, Any]) -> None:
        """Give one marked deal its invoice, or quarantine the deal with a reason."""
        deal_id = deal.get("id")
        try:
            done = self._handle(deal)
        except RecordDeferred as exc:
            log.info("%s; left for a later run", exc)
            self.summary.add("deals_deferred")
            return
        except RecordError as exc:
            self._quarantine(deal, exc.reason, exc.message)
            return
        except ApiRejected as exc:
            self._quarantine(deal, f"{exc.api.lower()}_rejected", exc.message)
            return
        except (ApiAuthError, ApiUnavailable):
            raise
        except Exception as exc:
            log.exception("deal %s: unexpected error", deal_id)
            self._quarantine(deal, "unexpected_error", redact(f"{type(exc).__name__}: {exc}", self._secrets))
            return
        if done and self.store.resolve_quarantine(STREAM, str(deal_id)):
            self.summary.add("quarantine_resolved")

    def _quarantine(self, deal: dict[str, Any], reason: str, message: str) -> None:
        log.warning("deal %s quarantined: %s: %s", deal.get("id"), reason, message)
        self.summary.quarantined_by_reason[reason] += 1
        self.store.quarantine(STREAM, str(deal.get("id")), reason, message, deal, self.config.fingerprint())

    def _handle(self, deal: dict[str, Any]) -> bool:
        """True once the deal has its invoice and the write-back is done (or it needs none)."""
        deal_id = int(deal["id"])
        key = deal_key(deal_id)
        written = external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)
        claim = self.store.create_claim(FAKTUROWNIA_INVOICE, key)
        if claim is None:
            if written:
                self.summary.add("deals_already_invoiced")  # made from an invoice (or invoiced before this DB)
                return True
            if self.store.deal_link_by_deal(deal_id) is not None:
                self.summary.add("deals_from_invoices")  # the deal of an invoice: it has its invoice already
                return True
        elif claim.created_id is not None:
            if written == str(claim.created_id) and self.invoiced_status is None:
                self.summary.add("deals_already_invoiced")
                return True
            self._write_back(deal, claim.created_id)  # invoiced earlier; the write-back did not finish
            return True
        check_deal(deal)
        fakturownia_client_id = self.clients.fakturownia_client_for(deal)
        payload = invoice_payload(
            deal,
            fakturownia_client_id=fakturownia_client_id,
            client_card=self.clients.card(fakturownia_client_id),
            settings=self.settings,
            departments=self.departments,
            crm_department_id=as_id(deal.get("department_id")),
            today=self.today(),
        )
        stale_before = stale_cutoff(self.clock(), self.stale_claim_minutes)
        outcome = None
        for _attempt in range(2):  # a lost answer: our own claim, taken over at once and looked up by oid
            outcome = create_under_claim(
                self.store, FAKTUROWNIA_INVOICE, [key], self.owner, stale_before=stale_before,
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
