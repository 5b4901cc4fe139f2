"""The Fakturownia client (the buyer) of a CRM deal's invoice: linked, matched by the client rules, or created.

A CRM client linked in the state DB answers at once. Otherwise both client bases are read once per run and
the client sync's own matcher decides (`client_matching.CrmClientIndex`, DESIGN.md "Client decisions"): a
counterpart is linked, a refusal (ambiguous or contradicting evidence) quarantines the deal with the
matcher's reason, and with no counterpart the client is created in Fakturownia from the CRM card
(`client_fields.fakturownia_client_fields`, `external_id` = the CRM id) under one create claim
(`claims.create_under_claim`, target `FAKTUROWNIA_CLIENT`) on every evidence key of the company: `crm:<id>`,
its NIP and its e-mail. So a run of this DAG and a client sync, or two runs, never make two clients for one
company; a create whose answer was lost is found again by `external_id` before anything is sent twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fakturownia_sync.claims import FAKTUROWNIA_CLIENT, create_under_claim, stale_cutoff
from fakturownia_sync.client_fields import fakturownia_client_fields
from fakturownia_sync.client_keys import email_key, tax_key
from fakturownia_sync.client_lookup import fakturownia_clients_by_external_id
from fakturownia_sync.client_matching import CRM, CrmClientIndex
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import ApiNotFound, RecordDeferred, RecordError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.ids import as_id
from fakturownia_sync.records import Party
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient

log = logging.getLogger(__name__)


class DealClients:
    """Finds or creates the Fakturownia client of each deal's CRM client, for one run."""

    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        departments: DepartmentMap,
        counters: Callable[[str], None],
        *,
        owner: str,
        stale_claim_minutes: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.departments = departments
        self.count = counters
        self.owner = owner
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self._links: dict[int, int] | None = None  # CRM id → Fakturownia id
        self._index: CrmClientIndex | None = None
        self._cards: dict[int, dict[str, Any]] = {}

    def card(self, fakturownia_id: int) -> dict[str, Any] | None:
        """The Fakturownia client card (for the invoice's buyer block), read once per run."""
        if fakturownia_id not in self._cards:
            try:
                self._cards[fakturownia_id] = self.fakturownia.get_client(fakturownia_id)
            except ApiNotFound:
                return None
        return self._cards[fakturownia_id]

    def fakturownia_client_for(self, deal: dict[str, Any]) -> int:
        crm_id = as_id(deal.get("client_id"))
        if crm_id is None:
            raise RecordError("deal_without_client", f"deal {deal.get('id')} has no client; pick one in the CRM")
        links = self._client_links()
        if crm_id in links:
            return links[crm_id]
        try:
            crm_card = self.crm.get_client(crm_id)
        except ApiNotFound:
            raise RecordError(
                "deal_client_missing", f"deal {deal.get('id')}: its CRM client {crm_id} no longer exists"
            ) from None
        claim = self.store.create_claim(FAKTUROWNIA_CLIENT, f"crm:{crm_id}")
        if claim is not None:  # an earlier attempt created (or began creating) it: never match it anew
            if claim.created_id is not None:
                self._link(claim.created_id, crm_id, "created")
                return claim.created_id
            return self._create(deal, crm_id, crm_card)
        index = self._bases()
        index.add(crm_card)
        decision = index.decide(CRM, crm_id)
        if decision.refused:
            raise RecordError(
                decision.reason,
                f"deal {deal.get('id')}: the Fakturownia client of CRM client {crm_id} cannot be decided "
                f"({decision.reason}; candidates {list(decision.candidates)}); see the client review",
            )
        if decision.partner_id is not None:
            self._link(int(decision.partner_id), crm_id, decision.evidence or "matched")
            self.count("clients_linked")
            return int(decision.partner_id)
        return self._create(deal, crm_id, crm_card)

    # Reading -------------------------------------------------------------------------------------------

    def _client_links(self) -> dict[int, int]:
        if self._links is None:
            self._links = {link.crm_client_id: link.fakturownia_client_id for link in self.store.all_client_links()}
        return self._links

    def _bases(self) -> CrmClientIndex:
        """Both client bases and the links, read once per run, only when a deal's client is not linked yet."""
        if self._index is None:
            cards = list(self.fakturownia.iter_client_cards())
            self._cards.update({int(card["id"]): card for card in cards})
            links = [(f_id, c_id) for c_id, f_id in self._client_links().items()]
            self._index = CrmClientIndex(self.crm.iter_clients(), cards, links)
        return self._index

    # Creating ------------------------------------------------------------------------------------------

    def _create(self, deal: dict[str, Any], crm_id: int, crm_card: dict[str, Any]) -> int:
        party = Party.from_client(crm_card)
        if party.tax_no and tax_key(party.tax_no) is None:
            raise RecordError(
                "invalid_nip",
                f"deal {deal.get('id')}: CRM client {crm_id} has NIP {party.tax_no!r}, which fails its checksum; "
                "fix it before the client is copied to Fakturownia",
            )
        department = self.departments.to_fakturownia(as_id(crm_card.get("department_id")), f"CRM client {crm_id}")
        fields = fakturownia_client_fields(
            crm_card, crm_client_id=crm_id, fakturownia_department_id=department, departments=self.departments.synced
        )
        keys = [f"crm:{crm_id}"]
        keys += [f"nip:{key}"] if (key := tax_key(party.tax_no)) else []
        keys += [f"email:{key}"] if (key := email_key(party.email)) else []

        def find_existing() -> int | None:
            found = fakturownia_clients_by_external_id(self.fakturownia, str(crm_id))
            if len(found) > 1:
                ids = sorted(int(record["id"]) for record in found)
                raise RecordError(
                    "ambiguous_external_id", f"CRM client {crm_id}: Fakturownia clients {ids} all name it"
                )
            return int(found[0]["id"]) if found else None

        def create() -> int:
            created = self.fakturownia.create_client(fields)
            self._cards[int(created["id"])] = created
            self.count("clients_created")
            return int(created["id"])

        stale_before = stale_cutoff(self.clock(), self.stale_claim_minutes)
        outcome = create_under_claim(
            self.store, FAKTUROWNIA_CLIENT, keys, self.owner,
            find_existing=find_existing, create=create, stale_before=stale_before,
        )  # fmt: skip
        if outcome.status == "unconfirmed":  # our own claim: look it up at once, before anything is sent again
            outcome = create_under_claim(
                self.store, FAKTUROWNIA_CLIENT, keys, self.owner,
                find_existing=find_existing, create=create, stale_before=stale_before,
            )  # fmt: skip
        if outcome.status == "held_by_other":
            raise RecordDeferred(f"deal {deal.get('id')}: run {outcome.holder} is creating its client right now")
        if outcome.record_id is None:
            raise RecordDeferred(f"deal {deal.get('id')}: the create of its Fakturownia client is not confirmed yet")
        self._link(outcome.record_id, crm_id, "created")
        return outcome.record_id

    def _link(self, fakturownia_id: int, crm_id: int, evidence: str) -> None:
        if not self.store.link_clients(fakturownia_id, crm_id, evidence):
            existing = self.store.client_link(fakturownia_id)
            if existing is None or existing.crm_client_id != crm_id:
                raise RecordError(
                    "duplicate_of_linked",
                    f"Fakturownia client {fakturownia_id} and CRM client {crm_id} belong together, "
                    "but one of them is linked to another client",
                )
        self._client_links()[crm_id] = fakturownia_id
        if self._index is not None:
            self._index.add_link(fakturownia_id, crm_id)
        log.debug("CRM client %s linked to Fakturownia client %s (%s)", crm_id, fakturownia_id, evidence)
