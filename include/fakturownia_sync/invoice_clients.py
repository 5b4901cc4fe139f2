"""The CRM client an invoice's deal belongs to: linked, matched by the client rules, or created now.

An invoice names its buyer two ways: a client card (`client_id`) and the buyer block typed on the
document. A linked card answers at once. Otherwise both client lists are read once per run (`invoice_client_bases`)
and the buyer is decided by the client sync's own matcher (`client_matching.CrmClientIndex`, the bulk
matcher applied to one record: DESIGN.md "Client decisions"); a refusal (ambiguous or contradicting
evidence, a CRM client linked to another company) quarantines the invoice with the matcher's reason. When
nothing matches, the CRM client is created through `claims.create_under_claim` (target `CRM_CLIENT`) on every
evidence key of the company (its card `fakturownia:<id>`, `nip:<NIP>`, `email:<address>`, spelled by
`claims.company_keys` as the client sync spells them), so that no two attempts (threads, retries, overlapping
runs, the client sync in another process) create two clients for one company, whatever evidence each reached
it by. A buyer without a card whose NIP or e-mail names a client card is that card's company: it is locked
and claimed on all the card's keys as well as its own, so a buyer named only by NIP and one named only by
e-mail (disjoint evidence) still meet on one claim. A create in flight
elsewhere defers the invoice to a later run; a lost answer is looked up at once (a fresh read of the CRM)
before anything is sent again, and one still unconfirmed (it may still land) defers the invoice too: the run
ends incomplete, its cursor stays, and a run after the take-over window settles it. The rest of the run goes on.

A tax id that is no tax id (junk such as `0000000000`, a failed checksum) is used as none and counted as a
data-quality warning; it never holds an invoice. A buyer with no card, no tax id and no e-mail (a receipt, a
walk-in customer) follows `anonymous_buyers`: one CRM client per normalised name and address (claimed under
`buyer:<that key>`, its note saying it was created from a document and carrying the key as a marker), one
catch-all client, or quarantine. Before such a client is created, a confirmed claim, else a CRM client whose
note carries the marker (in the client list the run reads anyway), is taken as the buyer's client: a replaced
or empty state DB creates no second client and moves no deal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from fakturownia_sync.claims import CRM_CLIENT, ClaimOutcome, company_keys, create_under_claim
from fakturownia_sync.client_decisions import anonymous_buyer_key, anonymous_mark
from fakturownia_sync.client_fields import crm_client_fields
from fakturownia_sync.client_matching import CrmClientIndex
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import RecordDeferred, RecordError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.invoice_client_bases import BasesSource, InvoiceClientBases
from fakturownia_sync.keyed_locks import KeyedLocks
from fakturownia_sync.records import Invoice, Party
from fakturownia_sync.run_summary import RunSummary
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.tax_numbers import check_tax_number, normalise_email

log = logging.getLogger(__name__)

COMPANY_KEY_ATTEMPTS = 3  # the company's keys grew while its locks were awaited (a card read meanwhile): retry
CLIENT_CREATE_ATTEMPTS = 3  # a lost answer is looked up (and the create re-sent only if absent) this often
WALK_IN_BUYER_NAME = "Klient detaliczny (walk-in buyer)"  # the CRM requires a name; the document has none


@dataclass(frozen=True)
class Evidence:
    """What an invoice's buyer is known by: the keys its locks and its create claim are taken on."""

    fakturownia_client_id: int | None = None
    tax_no: str | None = None
    email: str | None = None

    def keys(self) -> list[str]:
        """Every evidence key, by `claims.company_keys`: the one spelling the client sync claims under too."""
        own = f"fakturownia:{self.fakturownia_client_id}" if self.fakturownia_client_id is not None else None
        return company_keys(own, self.tax_no, self.email)


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
        self.bases = InvoiceClientBases(fakturownia, crm, store)
        self._lock = threading.Lock()
        self._client_locks = KeyedLocks()
        self._dry_run_links: set[int] = set()
        self._dry_run_ids: dict[str, int] = {}
        self._anonymous_invoices: set[int] = set()  # counted once each, however often a run handles one

    def use_client_bases(self, source: BasesSource, on_created: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Both client bases from `source` instead of the two lists (`InvoiceClientBases.use`)."""
        self.bases.use(source, on_created)

    def crm_client_for(self, invoice: Invoice) -> int:
        """The CRM client the invoice's deal belongs to: linked, matched, or created now."""
        fakturownia_id = invoice.client_id
        if fakturownia_id is not None:
            link = self.store.client_link(fakturownia_id)
            if link is not None:
                return link.crm_client_id
            raw_client = self.bases.card(fakturownia_id)
            party = Party.from_client(raw_client) if raw_client else invoice.buyer
            if raw_client is None:
                fakturownia_id = None  # the client card is gone: match by the buyer block alone
        else:
            party = invoice.buyer
        tax = check_tax_number(party.tax_no)
        if tax.warning:
            log.info("invoice %s: buyer tax id %r is no valid tax id; used as none", invoice.id, party.tax_no)
            self.summary.add("tax_id_warnings")
        email = normalise_email(party.email)
        if fakturownia_id is None and tax.key is None and email is None:
            return self._anonymous_buyer(invoice, party)
        evidence = Evidence(fakturownia_id, party.tax_no, party.email)
        # One company can be reached by its card, its NIP and its e-mail: hold all its keys, so that two threads
        # holding different evidence of the same company never both create it (the claim does it across
        # processes, on the same keys).
        keys = self._company_keys(party, evidence)
        for _attempt in range(COMPANY_KEY_ATTEMPTS):
            with self._client_locks.hold(*keys):
                now = self._company_keys(party, evidence)
                if set(now) <= set(keys):
                    return self._match_or_create(invoice, party, evidence, keys)
            keys = list(dict.fromkeys(keys + now))
        with self._client_locks.hold(*keys):
            return self._match_or_create(invoice, party, evidence, keys)

    def _company_keys(self, party: Party, evidence: Evidence) -> list[str]:
        """The keys a buyer's create is locked and claimed on: its own evidence and, when it has no card but
        its NIP or e-mail names one (the card `match_buyer` decides by), every key of that card. A buyer known
        only by NIP and one known only by e-mail thus share the card's keys."""
        keys = evidence.keys()
        if evidence.fakturownia_client_id is None:
            card = self.bases.index().card_for_buyer(buyer_record(party))
            if card is not None:
                keys = company_keys(f"fakturownia:{int(card['id'])}", card.get("tax_no"), card.get("email")) + keys
        return list(dict.fromkeys(keys))

    def _anonymous_buyer(self, invoice: Invoice, party: Party) -> int:
        """A buyer with no card, no tax id and no e-mail, by `anonymous_buyers` (DESIGN.md)."""
        policy = self.config.anonymous_buyers
        if policy.policy == "quarantine":
            raise RecordError(
                "anonymous_buyer",
                f"invoice {invoice.id}: its buyer has no client card, no tax id and no e-mail "
                "(anonymous_buyers policy 'quarantine')",
            )
        with self._lock:
            first_time = invoice.id not in self._anonymous_invoices
            self._anonymous_invoices.add(invoice.id)
        if first_time:  # an invoice handled twice in one run (e.g. deferred after a rebuild) is one deal
            self.summary.add("deals_for_anonymous_buyers")
        if policy.policy == "catch_all":
            return int(policy.crm_client_id)  # type: ignore[arg-type]  # validated with the policy
        name = party.name or " ".join(filter(None, (party.first_name, party.last_name)))
        key = anonymous_buyer_key(name, party.street, party.post_code, party.city)
        mark = anonymous_mark(key)
        if not name:
            party = replace(party, name=WALK_IN_BUYER_NAME)
        note = " ".join(filter(None, (party.note, f"Created from document {invoice.number}", mark)))
        keys = [f"buyer:{key}"]

        def known() -> int | None:  # created before: by a confirmed claim, else by its marker in the CRM
            claim = self.store.create_claim(CRM_CLIENT, keys[0])
            if claim is not None and claim.created_id is not None:
                return claim.created_id
            return self.bases.index().find_by_note(mark)

        with self._client_locks.hold(*keys):
            return self._create_claimed(
                invoice, party, replace(party, note=note), keys, None, lambda index: index.find_by_note(mark), known
            )

    # Matching and creating -----------------------------------------------------------------------------

    def _match(
        self, invoice: Invoice, party: Party, evidence: Evidence, *, reload: bool = False
    ) -> tuple[int | None, str]:
        """The client decision for this buyer; a refusal quarantines the invoice with the matcher's reason."""
        index = self.bases.index(reload=reload)
        if evidence.fakturownia_client_id is not None:
            decision = index.match_card(evidence.fakturownia_client_id)
        else:
            decision = index.match_buyer(buyer_record(party))
        if decision.refused:
            raise RecordError(
                decision.reason,
                f"invoice {invoice.id}: its buyer's CRM client cannot be decided ({decision.reason}; "
                f"candidates {list(decision.candidates)}); see the client review",
            )
        return decision.partner_id, decision.evidence

    def _match_or_create(self, invoice: Invoice, party: Party, evidence: Evidence, keys: list[str]) -> int:
        """Link a matching CRM client, or create one under a claim on the company's `keys` (held locked)."""
        crm_id, how = self._match(invoice, party, evidence)
        if crm_id is not None:
            self._link(invoice, evidence, crm_id, how)
            return crm_id

        def rematch(_index: CrmClientIndex) -> int | None:
            return self._match(invoice, party, evidence, reload=True)[0]

        return self._create_claimed(invoice, party, party, keys, evidence, rematch)

    def _create_claimed(
        self,
        invoice: Invoice,
        party: Party,
        created_party: Party,
        keys: list[str],
        evidence: Evidence | None,
        rematch: Callable[[CrmClientIndex], int | None],
        known: Callable[[], int | None] | None = None,
    ) -> int:
        """Create the CRM client under a claim on `keys` (or find what another attempt created), then link.
        `known()`, when given, names a client that already is the record (looked at before counting a dry-run
        create, and under the claim before sending one): it is used instead of creating."""
        evidence = evidence or Evidence()
        # Before any claim or dry-run count: a client the client sync would hold for review is not created here.
        crm_department_id = self.departments.to_crm(party.department_id, f"the client of invoice {invoice.id}")
        if self.dry_run:
            found = known() if known is not None else None
            return found if found is not None else self._would_create_client(keys)
        fields = crm_client_fields(
            created_party, fakturownia_client_id=evidence.fakturownia_client_id, crm_department_id=crm_department_id
        )

        def find_existing() -> int | None:  # a fresh read of the CRM: did the earlier attempt get through?
            return rematch(self.bases.index(reload=True))

        def create() -> int:
            found = known() if known is not None else None
            if found is not None:
                return found  # the claim is confirmed with it: nothing is created
            created = self.crm.create_client(fields)
            self.bases.add_created(created)
            self.summary.add("clients_created")
            return int(created["id"])

        stale_before = self.clock() - timedelta(minutes=self.stale_claim_minutes)
        outcome = ClaimOutcome.unconfirmed()
        for _attempt in range(CLIENT_CREATE_ATTEMPTS):  # an unconfirmed create is our own claim: looked up at once
            outcome = create_under_claim(
                self.store, CRM_CLIENT, keys, self.owner,
                find_existing=find_existing, create=create, stale_before=stale_before,
            )  # fmt: skip
            if outcome.status != "unconfirmed":
                break
        if outcome.status == "held_by_other":
            raise RecordDeferred(f"invoice {invoice.id}: run {outcome.holder} is creating its CRM client right now")
        if outcome.record_id is None:
            raise RecordDeferred(
                f"invoice {invoice.id}: the create of its CRM client got no answer and is not in the CRM yet; it "
                "is looked up again by the next run and sent again only once it can no longer land"
            )
        self._link(invoice, evidence, outcome.record_id, "created")
        return outcome.record_id

    def _would_create_client(self, keys: list[str]) -> int:
        """Dry run: count the CRM client that would be created and stand in a placeholder id for it (one per
        company, whichever of its keys a buyer names)."""
        with self._lock:
            known = next((self._dry_run_ids[key] for key in keys if key in self._dry_run_ids), None)
            if known is None:
                known = -(len(set(self._dry_run_ids.values())) + 1)
                self.summary.add("clients_created")
            for key in keys:
                self._dry_run_ids.setdefault(key, known)
            return known

    def _link(self, invoice: Invoice, evidence: Evidence, crm_id: int, how: str) -> None:
        """Record the one-to-one client link; a CRM client already linked elsewhere goes to review."""
        fakturownia_id = evidence.fakturownia_client_id
        if fakturownia_id is None:
            return  # a buyer without a client card: matched again by NIP/e-mail next time
        self.bases.index().add_link(fakturownia_id, crm_id)
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


def buyer_record(party: Party) -> dict[str, Any]:
    """A buyer block in the shape of a client record, as the matcher reads one."""
    return {
        "name": party.name,
        "first_name": party.first_name,
        "last_name": party.last_name,
        "tax_no": party.tax_no,
        "email": party.email,
        "post_code": party.post_code,
    }
