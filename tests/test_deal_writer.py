"""The deal writer's creates under claim, against a CRM stand-in: lost answers, crashes, other runs, corrections.

Every deal create goes through `claims.create_under_claim` (target `CRM_DEAL`, key `invoice:<id>`). These tests
drive `DealWriter` directly, with a CRM that can lose an answer after applying the create (or before), so each
rule of `deal_writer`'s docstring is checked by what the CRM ends up holding and how many creates were sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from fakturownia_sync.claims import CRM_DEAL, invoice_key
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY, payload_hash
from fakturownia_sync.deal_writer import DealWriter
from fakturownia_sync.errors import AmbiguousWriteError, ApiRejected, RecordDeferred
from fakturownia_sync.run_summary import RunSummary
from fakturownia_sync.state import StateStore
from fakturownia_sync.timing import STALE_CLAIM_MINUTES

INVOICE = SimpleNamespace(id=5, updated_at=datetime(2026, 3, 1, tzinfo=UTC))
NO_ANSWER = 504  # the server never answered: the create may still land
ANSWERED = 503  # the server answered: the create can no longer land


def deal_for(invoice_id: int, price: str = "123.00") -> dict[str, Any]:
    return {
        "name": f"Faktura FV {invoice_id}/2026",
        "price": price,
        "currency": "PLN",
        "client_id": 7,
        "url": f"https://acme.fakturownia.pl/invoices/{invoice_id}",
        "description": "Faktura",
        "external_ids": {FAKTUROWNIA_INVOICE_KEY: str(invoice_id)},
    }


class Crm:
    """Holds deals; `lose` scripts the next creates: (status of the lost answer, whether the create was applied)."""

    def __init__(self) -> None:
        self.deals: dict[int, dict[str, Any]] = {}
        self.lose: list[tuple[int, bool]] = []
        self.creates = self.updates = self.scans = 0

    def create_deal(self, deal: dict[str, Any]) -> dict[str, Any]:
        self.creates += 1
        status, applied = self.lose.pop(0) if self.lose else (None, True)
        created = {**deal, "id": 1000 + len(self.deals)} if applied else None
        if created is not None:
            self.deals[created["id"]] = created
        if status is not None:
            raise AmbiguousWriteError("Sugester", "the answer was lost", status=status, method="POST", path="/deals")
        return created

    def update_deal(self, deal_id: int, deal: dict[str, Any]) -> None:
        self.updates += 1
        self.deals[deal_id].update(deal)

    def iter_deals(self):
        self.scans += 1
        yield from list(self.deals.values())


def writer(store: StateStore, crm: Crm, owner: str = "dag/run-1", after: timedelta = timedelta(0)) -> DealWriter:
    return DealWriter(
        crm, store, RunSummary(stream="invoices_to_deals"), owner=owner, dry_run=False,  # type: ignore[arg-type]
        stale_claim_minutes=STALE_CLAIM_MINUTES, clock=lambda: datetime.now(UTC) + after,
    )  # fmt: skip


def write(deals: DealWriter, store: StateStore, deal: dict[str, Any] | None = None) -> bool:
    deal = deal or deal_for(INVOICE.id)
    return deals.write(INVOICE, store.deal_link(INVOICE.id), deal, payload_hash(deal))  # type: ignore[arg-type]


def lost_then_settled(
    store: StateStore, crm: Crm, lost: tuple[int, bool], corrected: dict[str, Any] | None = None
) -> tuple[DealWriter, list[int]]:
    """One run whose first create loses its answer (`lost`: status, applied), then settles as the engine does
    after its sweep; `rehandle` handles the invoice again (as `corrected` when given). The writer and the ids
    it re-handled."""
    crm.lose = [lost]
    deals = writer(store, crm)
    assert write(deals, store) is False
    if corrected is not None:
        deals.recheck.add(INVOICE.id)  # what `deal_upkeep.record_correction` does for an unconfirmed create
    calls: list[int] = []

    def rehandle(invoice_id: int) -> None:
        calls.append(invoice_id)
        write(deals, store, corrected)

    deals.settle_pending({INVOICE.id}, rehandle=rehandle)
    return deals, calls


def claim(store: StateStore):
    return store.create_claim(CRM_DEAL, invoice_key(INVOICE.id))


def test_a_deal_is_created_linked_and_its_claim_confirmed(store: StateStore) -> None:
    crm = Crm()
    deals = writer(store, crm)
    assert write(deals, store) is True
    [deal_id] = crm.deals
    assert store.deal_link(INVOICE.id).deal_id == deal_id and claim(store).created_id == deal_id
    assert write(writer(store, crm, "dag/run-2"), store) is True  # linked: unchanged, nothing sent
    assert (crm.creates, crm.updates, crm.scans) == (1, 0, 0)


def test_a_lost_answer_that_may_still_land_is_looked_up_never_sent_again_before_the_window(store: StateStore) -> None:
    crm = Crm()
    deals, calls = lost_then_settled(store, crm, (NO_ANSWER, False))
    assert deals.summary.deals_unconfirmed == 1 and crm.creates == 1 and calls == []
    # The task's retry (same run) looks it up at once and still does not send it ...
    retry = writer(store, crm)
    assert write(retry, store) is False and crm.creates == 1 and crm.scans >= 2
    # ... a run after the take-over window creates what is still missing, once.
    later = writer(store, crm, "dag/run-2", after=timedelta(minutes=STALE_CLAIM_MINUTES + 1))
    assert write(later, store) is True
    assert crm.creates == 2 and len(crm.deals) == 1
    assert claim(store).created_id == store.deal_link(INVOICE.id).deal_id == next(iter(crm.deals))


def test_a_lost_answer_that_landed_is_found_by_the_same_run_and_linked(store: StateStore) -> None:
    crm = Crm()
    deals, calls = lost_then_settled(store, crm, (NO_ANSWER, True))
    [deal_id] = crm.deals
    assert deals.summary.deals_unconfirmed == 0 and deals.summary.deals_recovered == 1 and calls == []
    assert store.deal_link(INVOICE.id).deal_id == deal_id and claim(store).created_id == deal_id
    assert crm.creates == 1 and crm.updates == 0  # the found deal shows the invoice: nothing to rewrite


def test_a_create_the_server_answered_is_sent_again_by_the_same_run(store: StateStore) -> None:
    crm = Crm()
    deals, calls = lost_then_settled(store, crm, (ANSWERED, False))
    assert calls == [INVOICE.id] and crm.creates == 2 and len(crm.deals) == 1
    assert deals.summary.deals_unconfirmed == 0 and claim(store).created_id == next(iter(crm.deals))


def test_a_create_in_flight_in_another_run_defers_until_the_window_then_is_looked_up(store: StateStore) -> None:
    crm = Crm()
    crm.lose = [(NO_ANSWER, True)]
    assert write(writer(store, crm, "dag/run-1"), store) is False  # run 1 dies with its create unconfirmed
    with pytest.raises(RecordDeferred, match="dag/run-1"):
        write(writer(store, crm, "dag/run-2"), store)
    later = writer(store, crm, "dag/run-3", after=timedelta(minutes=STALE_CLAIM_MINUTES + 1))
    assert write(later, store) is True
    assert crm.creates == 1 and later.summary.deals_recovered == 1
    assert claim(store).created_id == store.deal_link(INVOICE.id).deal_id


def test_a_crash_between_the_link_and_the_claims_confirmation_is_settled_without_the_crm(store: StateStore) -> None:
    store.claim_create(CRM_DEAL, [invoice_key(INVOICE.id)], "dag/run-1")
    store.link_deal(INVOICE.id, 1000, payload_hash(deal_for(INVOICE.id)), None)
    crm = Crm()
    deals = writer(store, crm, "dag/run-1")
    deals.settle_pending(set(), rehandle=lambda invoice_id: pytest.fail(f"invoice {invoice_id} handled again"))
    assert claim(store).created_id == 1000 and crm.creates == 0


def test_a_correction_met_while_the_create_was_unconfirmed_is_written_once_the_deal_is_found(
    store: StateStore,
) -> None:
    crm = Crm()
    deals, calls = lost_then_settled(store, crm, (NO_ANSWER, True), corrected=deal_for(INVOICE.id, price="100.00"))
    [deal] = crm.deals.values()
    assert calls == [INVOICE.id] and deal["price"] == "100.00" and crm.updates == 1
    assert not deals.create_in_flight(INVOICE.id)


def test_a_refused_create_frees_its_claim(store: StateStore) -> None:
    class Refusing(Crm):
        def create_deal(self, deal: dict[str, Any]) -> dict[str, Any]:
            raise ApiRejected("Sugester", "price: too big", status=422)

    with pytest.raises(ApiRejected):
        write(writer(store, Refusing()), store)
    assert claim(store) is None and store.deal_link(INVOICE.id) is None
