"""Finding the CRM client that is the same company as a Fakturownia client, strongest evidence first.

1. the Fakturownia client's `external_id` names a CRM client id;
2. a CRM client's `external_ids.fakturownia_client_id` names the Fakturownia client;
3. the NIP, normalised and checksum-validated (an invalid NIP is not evidence);
4. the e-mail, case and whitespace folded; a CRM client is not matched by a shared e-mail when its valid
   NIP differs from the evidence's, or (when the evidence carries a name) when the names have nothing in
   common and the post codes differ (one accountant's address on several companies' cards).

Evidence that points at more than one CRM client is ambiguous: nothing is merged by guess.

This index answers for one invoice's buyer at a time; the two-way client sync matches whole client bases
with `bulk_matching`, under the same rules and the same keys (`client_keys`), so both land an invoice's
deal and a client's edits on the same CRM client.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fakturownia_sync.client_fields import FAKTUROWNIA_CLIENT_KEY
from fakturownia_sync.client_keys import email_key, names_unrelated, tax_key
from fakturownia_sync.sugester_client import external_ids_of


@dataclass(frozen=True)
class Evidence:
    fakturownia_client_id: int | None = None
    crm_client_id_hint: int | None = None  # from the Fakturownia client's external_id
    tax_key: str | None = None
    email: str | None = None
    name: str | None = None  # optional: lets a shared e-mail be vetoed when the names are unrelated
    post_code: str | None = None


@dataclass(frozen=True)
class Match:
    crm_client_id: int | None
    evidence: str = ""
    candidates: tuple[int, ...] = field(default_factory=tuple)

    @property
    def ambiguous(self) -> bool:
        return self.crm_client_id is None and len(self.candidates) > 1


class CrmClientIndex:
    """CRM clients indexed by every kind of evidence; built from one scan, extended as clients are created."""

    def __init__(self, crm_clients: Iterable[dict[str, Any]] = ()) -> None:
        self.ids: set[int] = set()
        self.by_fakturownia_id: dict[int, list[int]] = defaultdict(list)
        self.by_tax_key: dict[str, list[int]] = defaultdict(list)
        self.by_email: dict[str, list[int]] = defaultdict(list)
        self.tax_key_of: dict[int, str] = {}
        self.place_of: dict[int, tuple[str, str]] = {}
        for client in crm_clients:
            self.add(client)

    def add(self, client: dict[str, Any]) -> None:
        crm_id = int(client["id"])
        if crm_id in self.ids:
            return
        self.ids.add(crm_id)
        fakturownia_id = external_ids_of(client).get(FAKTUROWNIA_CLIENT_KEY)
        if fakturownia_id and fakturownia_id.isdigit():
            self.by_fakturownia_id[int(fakturownia_id)].append(crm_id)
        tax = tax_key(client.get("tax_no"))
        if tax:
            self.by_tax_key[tax].append(crm_id)
            self.tax_key_of[crm_id] = tax
        self.place_of[crm_id] = (client.get("name") or "", client.get("post_code") or "")
        email = email_key(client.get("email"))
        if email:
            self.by_email[email].append(crm_id)

    def match(self, evidence: Evidence) -> Match:
        if evidence.crm_client_id_hint is not None and evidence.crm_client_id_hint in self.ids:
            return Match(evidence.crm_client_id_hint, "external_id")
        lookups = (
            ("external_ids", self.by_fakturownia_id, evidence.fakturownia_client_id),
            ("nip", self.by_tax_key, evidence.tax_key),
            ("email", self.by_email, evidence.email),
        )
        for name, index, key in lookups:
            if key is None:
                continue
            found = index.get(key, [])
            if name == "email":
                found = [i for i in found if not self._contradicts(i, evidence)]
            if len(found) == 1:
                return Match(found[0], name)
            if len(found) > 1:
                return Match(None, name, tuple(sorted(found)))
        return Match(None)

    def _contradicts(self, crm_id: int, evidence: Evidence) -> bool:
        """Whether the CRM client's own data says it is another company than the one sharing its e-mail."""
        tax = self.tax_key_of.get(crm_id)
        if evidence.tax_key is not None and tax is not None and tax != evidence.tax_key:
            return True
        if evidence.name is None:
            return False
        name, post_code = self.place_of.get(crm_id, ("", ""))
        return names_unrelated(evidence.name, name, evidence.post_code, post_code)
