"""Finding the CRM client that is the same company as a Fakturownia client, strongest evidence first.

1. the Fakturownia client's `external_id` names a CRM client id;
2. a CRM client's `external_ids.fakturownia_client_id` names the Fakturownia client;
3. the NIP, normalised and checksum-validated (an invalid NIP is not evidence);
4. the e-mail, case and whitespace folded.

Evidence that points at more than one CRM client is ambiguous: nothing is merged by guess.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from include.client_fields import FAKTUROWNIA_CLIENT_KEY
from include.sugester_client import external_ids_of
from include.tax_numbers import check_tax_number, normalise_email


@dataclass(frozen=True)
class Evidence:
    fakturownia_client_id: int | None = None
    crm_client_id_hint: int | None = None  # from the Fakturownia client's external_id
    tax_key: str | None = None
    email: str | None = None


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
        tax = check_tax_number(client.get("tax_no"))
        if tax.key:
            self.by_tax_key[tax.key].append(crm_id)
        email = normalise_email(client.get("email"))
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
            if len(found) == 1:
                return Match(found[0], name)
            if len(found) > 1:
                return Match(None, name, tuple(sorted(found)))
        return Match(None)
