"""Both client bases as one client-sync run sees them, and the links between them.

The matcher, the merge of linked pairs, the creates and the review all read and change the same picture
of the two systems; it lives here, once, so each of those parts stays about one thing. What the run learns
(new versions of Fakturownia clients for the mirror, snapshots of merged pairs) is buffered here and
flushed to the state DB in batches: cheap to redo, costly to lose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fakturownia_sync.client_fields import SYNCED_FIELDS
from fakturownia_sync.client_suggestions import place_frame
from fakturownia_sync.records import parse_timestamp
from fakturownia_sync.state import ClientLink, StateStore

SNAPSHOT_BATCH = 500
MIRROR_FIELDS = ("id", "updated_at", "external_id", *SYNCED_FIELDS)
CRM_RECORD_FIELDS = ("id", "updated_at", "external_ids", *SYNCED_FIELDS)


def trim(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: record.get(name) for name in fields if name in record}


@dataclass
class ClientBases:
    store: StateStore
    fakturownia: dict[int, dict[str, Any]] = field(default_factory=dict)  # the mirror, by Fakturownia id
    crm: dict[int, dict[str, Any]] = field(default_factory=dict)  # every CRM client, by CRM id
    links: dict[int, ClientLink] = field(default_factory=dict)  # by Fakturownia id
    linked_crm: set[int] = field(default_factory=set)
    mirror_updates: list[tuple[dict[str, Any], datetime | None]] = field(default_factory=list)
    snapshots: dict[int, dict[str, Any]] = field(default_factory=dict)
    # (Fakturownia id, CRM id) pairs a person told apart on the review page: two companies, whatever they share
    apart: set[tuple[int, int]] = field(default_factory=set)

    def load_links(self) -> None:
        self.links = {link.fakturownia_client_id: link for link in self.store.all_client_links()}
        self.linked_crm = {link.crm_client_id for link in self.links.values()}

    def link_pairs(self) -> list[tuple[int, int]]:
        return [(link.fakturownia_client_id, link.crm_client_id) for link in self.links.values()]

    def set_link(self, link: ClientLink) -> None:
        self.links[link.fakturownia_client_id] = link
        self.linked_crm.add(link.crm_client_id)

    def told_apart(self, side: str, record_id: int) -> set[int]:
        """The records of the other side that belong to a company a person told apart from this record's company.
        A company is a record and its linked partner, so the copies the sync made of two records told apart are
        apart too, and never resemble each other."""
        if not self.apart:
            return set()
        if side == "fakturownia":
            own_f, link = record_id, self.links.get(record_id)
            own_c = link.crm_client_id if link else None
        else:
            own_c, partner = record_id, self.partner_of_crm(record_id)
            own_f = partner.fakturownia_client_id if partner else None
        found: set[int | None] = set()
        for f, c in self.apart:
            if f == own_f:  # the company of c is another one: its record on the other side
                found.add(c if side == "fakturownia" else self._fakturownia_partner(c))
            if c == own_c:
                found.add(self._crm_partner(f) if side == "fakturownia" else f)
        return {record for record in found if record is not None}

    def partner_of_crm(self, crm_id: int) -> ClientLink | None:
        if crm_id not in self.linked_crm:
            return None
        return next((link for link in self.links.values() if link.crm_client_id == crm_id), None)

    def _crm_partner(self, f_id: int) -> int | None:
        link = self.links.get(f_id)
        return link.crm_client_id if link else None

    def _fakturownia_partner(self, c_id: int) -> int | None:
        link = self.partner_of_crm(c_id)
        return link.fakturownia_client_id if link else None

    def remember_fakturownia(self, record: dict[str, Any]) -> None:
        self.fakturownia[int(record["id"])] = record
        self.mirror_updates.append((record, parse_timestamp(record.get("updated_at"))))

    def flush(self) -> None:
        """Persist what the run learnt so far: mirror versions and snapshots."""
        if self.mirror_updates:  # a client read again and then written: its last version is the one kept
            latest = {int(record["id"]): (record, updated) for record, updated in self.mirror_updates}
            self.store.save_fakturownia_clients(latest.values())
            self.mirror_updates = []
        if self.snapshots:
            self.store.set_client_snapshots(self.snapshots)
            self.snapshots = {}


def places(records: dict[int, dict[str, Any]]) -> Any:
    """Names and places of the records, for look-alike suggestions (`client_suggestions`)."""
    rows = list(records.values())
    return place_frame(
        [r["id"] for r in rows],
        [r.get("name") or " ".join(filter(None, (r.get("first_name"), r.get("last_name")))) for r in rows],
        [r.get("post_code") for r in rows],
        [r.get("city") for r in rows],
    )


def brief(record: dict[str, Any] | None) -> dict[str, Any]:
    """The fields a person needs to recognise a client in a suggestion."""
    if not record:
        return {}
    return {name: record.get(name) for name in ("name", "tax_no", "email", "post_code", "city")}
