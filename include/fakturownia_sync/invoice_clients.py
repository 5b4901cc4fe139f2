"""The CRM client an invoice's deal belongs to: linked, matched by the client rules, or created now.

An invoice names its buyer two ways: a client card (`client_id`) and the buyer block typed on the
document. A linked card answers at once. Otherwise the CRM's clients are read once per run and matched
by the same rules as the client sync; when nothing matches, the CRM client is created under a claim so
that no two attempts (threads, retries, overlapping runs) create two clients for one company.

Client cards are read one by one while few are needed, then all at once page by page: a first sync of a
long history meets thousands of cards, and one list read per 100 beats one read per card.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fakturownia_sync.client_fields import crm_client_fields
from fakturownia_sync.client_matching import CrmClientIndex, Evidence
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import (
    AmbiguousWriteError,
    ApiNotFound,
    ApiRejected,
    ApiUnavailable,
    RecordDeferred,
    RecordError,
)
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.keyed_locks import KeyedLocks
from fakturownia_sync.records import Invoice, Party
from fakturownia_sync.run_summary import RunSummary
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.tax_numbers import check_tax_number, normalise_email

log = logging.getLogger(__name__)

CLIENT_CREATE_ATTEMPTS = 3
# After this many single client-card reads in one run, read all client cards page by page instead.
CLIENT_CARDS_BULK_AFTER = 50


class InvoiceClients:
    """Finds or creates the CRM client of each invoice's buyer, for the writer threads of one run."""

    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        config: SyncConfig,
        summary: RunSummary,
        *,
        owner: str,
        dry_run: bool,
        stale_claim_minutes: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.config = config
        self.departments = DepartmentMap(config)
        self.summary = summary
        self.owner = owner
        self.dry_run = dry_run
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self._lock = threading.Lock()
        self._client_locks = KeyedLocks()
        self._crm_clients: CrmClientIndex | None = None
        self._created_clients: list[dict[str, Any]] = []
        self._dry_run_links: set[int] = set()
        self._dry_run_ids: dict[str, int] = {}
        self._fakturownia_clients: dict[int, dict[str, Any] | None] = {}
        self._client_card_reads = 0
        self._all_client_cards_read = False

    def crm_client_for(self, invoice: Invoice) -> int:
        """The CRM client the invoice's deal belongs to: linked, matched, or created now."""
        fakturownia_id = invoice.client_id
        if fakturownia_id is not None:
            link = self.store.client_link(fakturownia_id)
            if link is not None:
                return link.crm_client_id
            raw_client = self._fakturownia_client(fakturownia_id)
            party = Party.from_client(raw_client) if raw_client else invoice.buyer
            if raw_client is None:
                fakturownia_id = None  # the client card is gone: match by the buyer block alone
        else:
            party = invoice.buyer
        if party.is_empty:
            raise RecordError("no_client", f"invoice {invoice.id} has no client and no buyer data")
        tax = check_tax_number(party.tax_no)
        if tax.present and not tax.valid:
            raise RecordError("invalid_nip", f"invoice {invoice.id}: buyer NIP {party.tax_no!r} is not a valid NIP")
        email = normalise_email(party.email)
        if fakturownia_id is None and tax.key is None and email is None:
            raise RecordError(
                "no_client",
                f"invoice {invoice.id} has no client card and its buyer has neither a NIP nor an e-mail; "
                "a CRM client is not created from a name alone",
            )
        hint = int(party.external_id) if party.external_id.isdigit() else None
        evidence = Evidence(fakturownia_id, hint, tax.key, email, name=party.name, post_code=party.post_code)
        # One company can be reached by its card, its NIP and its e-mail: hold all three, so that two threads
        # holding different evidence of the same company never both create it.
        with self._client_locks.hold(*evidence_keys(evidence)):
            return self._match_or_create(invoice, party, evidence)

    # Reading -------------------------------------------------------------------------------------------

    def _crm_clients_index(self, *, reload: bool = False) -> CrmClientIndex:
        """All CRM clients, read once per run and only when an invoice needs a client not linked yet."""
        with self._lock:
            if self._crm_clients is None or reload:
                index = CrmClientIndex(self.crm.iter_clients())
                for created in self._created_clients:  # created by other threads while the scan ran
                    index.add(created)
                self._crm_clients = index
            return self._crm_clients

    def _fakturownia_client(self, client_id: int) -> dict[str, Any] | None:
        """A client card, read one by one while few are needed, then all at once page by page."""
        with self._lock:
            if client_id in self._fakturownia_clients:
                return self._fakturownia_clients[client_id]
            if self._client_card_reads >= CLIENT_CARDS_BULK_AFTER and not self._all_client_cards_read:
                for page in self.fakturownia.iter_client_pages_by_update():
                    self._fakturownia_clients.update({int(card["id"]): card for card in page})
                self._all_client_cards_read = True
                if client_id in self._fakturownia_clients:
                    return self._fakturownia_clients[client_id]
            self._client_card_reads += 1
        try:
            card = self.fakturownia.get_client(client_id)
        except ApiNotFound:
            card = None
        with self._lock:
            self._fakturownia_clients[client_id] = card
        return card

    # Matching and creating -----------------------------------------------------------------------------

    def _match(self, invoice: Invoice, evidence: Evidence, *, reload: bool = False) -> tuple[int | None, str]:
        match = self._crm_clients_index(reload=reload).match(evidence)
        if match.ambiguous:
            raise RecordError(
                "ambiguous_client",
                f"invoice {invoice.id}: {match.evidence} matches CRM clients {list(match.candidates)}",
            )
        return match.crm_client_id, match.evidence

    def _match_or_create(self, invoice: Invoice, party: Party, evidence: Evidence) -> int:
        """Link a matching CRM client, or create one under a claim so that no two attempts both create it."""
        crm_id, how = self._match(invoice, evidence)
        if crm_id is not None:
            self._link(invoice, evidence, crm_id, how)
            return crm_id
        key = claim_key(evidence)
        # Before any claim or dry-run count: a client the client sync would hold for review is not created here.
        crm_department_id = self.departments.to_crm(party.department_id, f"the client of invoice {invoice.id}")
        if self.dry_run:
            return self._would_create_client(key)
        if not self.store.claim_crm_client(key, self.owner):
            claimed_id, claimed_by, _at = self.store.crm_client_claim(key) or (None, "", None)
            if claimed_id is not None:  # created by an earlier or a concurrent run
                self._link(invoice, evidence, claimed_id, "created")
                return claimed_id
            stale_before = self.clock() - timedelta(minutes=self.stale_claim_minutes)
            if not self.store.take_over_crm_client_claim(key, self.owner, stale_before=stale_before):
                raise RecordDeferred(f"invoice {invoice.id}: run {claimed_by} is creating its CRM client right now")
            crm_id, how = self._match(invoice, evidence, reload=True)  # did the earlier attempt get through?
            if crm_id is not None:
                self.store.confirm_crm_client(key, crm_id)
                self._link(invoice, evidence, crm_id, how)
                return crm_id
        fields = crm_client_fields(
            party, fakturownia_client_id=evidence.fakturownia_client_id, crm_department_id=crm_department_id
        )
        for _attempt in range(CLIENT_CREATE_ATTEMPTS):
            try:
                created = self.crm.create_client(fields)
            except AmbiguousWriteError as exc:
                log.warning("invoice %s: %s; re-reading CRM clients before creating again", invoice.id, exc)
                crm_id, how = self._match(invoice, evidence, reload=True)
                if crm_id is None:
                    continue
            except ApiRejected:
                self.store.release_crm_client_claim(key)  # refused: nothing was created
                raise
            else:
                crm_id, how = int(created["id"]), "created"
                with self._lock:
                    self._created_clients.append(created)
                self._crm_clients_index().add(created)
                self.summary.add("clients_created")
            self.store.confirm_crm_client(key, crm_id)
            self._link(invoice, evidence, crm_id, how)
            return crm_id
        raise ApiUnavailable(
            self.crm.account.api,
            f"could not confirm the CRM client for invoice {invoice.id} after {CLIENT_CREATE_ATTEMPTS} attempts",
        )

    def _would_create_client(self, key: str) -> int:
        """Dry run: count the CRM client that would be created and stand in a placeholder id for it."""
        with self._lock:
            if key not in self._dry_run_ids:
                self._dry_run_ids[key] = -(len(self._dry_run_ids) + 1)
                self.summary.add("clients_created")
            return self._dry_run_ids[key]

    def _link(self, invoice: Invoice, evidence: Evidence, crm_id: int, how: str) -> None:
        """Record the one-to-one client link; a CRM client already linked elsewhere goes to review."""
        fakturownia_id = evidence.fakturownia_client_id
        if fakturownia_id is None:
            return  # a buyer without a client card: matched again by NIP/e-mail next time
        if self.dry_run:
            with self._lock:
                first_time = fakturownia_id not in self._dry_run_links
                self._dry_run_links.add(fakturownia_id)
            if first_time:
                self.summary.add("clients_linked")
            return
        if not self.store.link_clients(fakturownia_id, crm_id, how):
            existing = self.store.client_link(fakturownia_id)
            if existing is not None and existing.crm_client_id == crm_id:
                return  # a concurrent run linked the same pair a moment ago
            raise RecordError(
                "ambiguous_client",
                f"invoice {invoice.id}: Fakturownia client {fakturownia_id} matches CRM client {crm_id} by {how}, "
                "but one of them is already linked to another client",
            )
        if how != "created":
            self.summary.add("clients_linked")


def evidence_keys(evidence: Evidence) -> list[str]:
    keys = [f"fakturownia:{evidence.fakturownia_client_id}"] if evidence.fakturownia_client_id is not None else []
    keys += [f"nip:{evidence.tax_key}"] if evidence.tax_key else []
    keys += [f"email:{evidence.email}"] if evidence.email else []
    return keys or [claim_key(evidence)]


def claim_key(evidence: Evidence) -> str:
    """What a CRM client create is claimed under: the Fakturownia client, else the buyer's NIP or e-mail."""
    if evidence.fakturownia_client_id is not None:
        return f"fakturownia:{evidence.fakturownia_client_id}"
    if evidence.tax_key:
        return f"nip:{evidence.tax_key}"
    return f"email:{evidence.email}"
