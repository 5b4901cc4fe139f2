"""CRM deals marked for invoicing become exactly one Fakturownia invoice each ("Dodaj fakturę"): the run.

Which deals
    Deals whose status is one of `deal_invoicing.statuses` (names or ids, resolved through the CRM's deal
    statuses at the start of the run; a name the CRM does not have fails the run in one sentence). A deal that
    already has its invoice is left alone (`deal_invoice_writer`), so a deal never gets a second invoice and a
    second run writes nothing.

Exactly one invoice per deal, no loop, no echo
    `deal_invoice_writer` creates each invoice under a claim (`deal:<id>`, `oid` = the deal id), links it to
    its deal the moment Fakturownia answers, so `fakturownia_invoices_to_deals` never makes it a second deal,
    and writes the invoice back onto the deal.

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

from fakturownia_sync.config import SyncConfig
from fakturownia_sync.deal_clients import DealClients
from fakturownia_sync.deal_invoice_writer import DealInvoiceWriter
from fakturownia_sync.deal_statuses import resolve_statuses
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import ApiNotFound, SyncError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.ids import as_id
from fakturownia_sync.invoice_from_deal import check_deal, invoice_payload
from fakturownia_sync.quarantine_retry import nothing_new
from fakturownia_sync.record_outcome import RecordStream, handle_record
from fakturownia_sync.redaction import redact
from fakturownia_sync.run_summary import ApiCalls, api_calls
from fakturownia_sync.state import QuarantineEntry, StateStore
from fakturownia_sync.sugester_client import SugesterClient
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
        self.invoices = DealInvoiceWriter(
            fakturownia=fakturownia, crm=crm, store=store, summary=self.summary,
            owner=owner, stale_claim_minutes=stale_claim_minutes, clock=clock,
        )  # fmt: skip
        self._secrets = (fakturownia.account.token, crm.account.token)
        self._stream = RecordStream(
            kind="deal", stream=STREAM, store=store, count=self.summary.add,
            count_reason=lambda reason: self.summary.quarantined_by_reason.update((reason,)), secrets=self._secrets,
            fingerprint=config.fingerprint,
        )  # fmt: skip
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
        wanted, self.invoices.invoiced_status = resolve_statuses(self.crm, self.config)
        summary.statuses = sorted(wanted.values())
        log.info(
            "Deal invoicing is on: deals in status %s become %s invoices%s.",
            ", ".join(repr(name) for name in summary.statuses),
            self.settings.invoice_kind,
            f", then move to status id {self.invoices.invoiced_status}"
            if self.invoices.invoiced_status is not None
            else "",
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
        """Give one marked deal its invoice, or quarantine the deal with a reason (`record_outcome`)."""
        handle_record(self._stream, deal, lambda: self._handle(deal))

    def _handle(self, deal: dict[str, Any]) -> bool:
        """True once the deal has its invoice and the write-back is done (or it needs none)."""
        if self.invoices.has_invoice(deal):
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
        return self.invoices.create(deal, payload)
