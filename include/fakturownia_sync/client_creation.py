"""Clients that exist on one side only are created on the other, each under a claim.

An unmatched Fakturownia client becomes a CRM client carrying `external_ids.fakturownia_client_id`; an
unmatched CRM client becomes a Fakturownia client carrying `external_id` = the CRM id; each under a claim
in the state DB (`fakturownia:<id>`, the key the invoices sync uses too, and `crm:<id>`). A create whose
answer was lost is counted as unconfirmed: the next run finds the record by its external id (the CRM is
read whole; Fakturownia is asked by `external_id`) before anything is created again.

What is created and what is held follows DESIGN.md "Client decisions" (`client_decisions`): an invalid or
junk tax id is no tax id (the record is created, and an `invalid_tax_id` note says what to fix); a look-alike
(same normalised name at the same post code) that strong keys tell apart (different valid NIPs, different
e-mails) never holds a record back: it is created and a `possible_duplicate` note names the look-alike. A
record is held only when it closely resembles one that nothing tells it apart from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fakturownia_sync.bulk_matching import BulkMatch
from fakturownia_sync.client_bases import (
    CRM_RECORD_FIELDS,
    MIRROR_FIELDS,
    ClientBases,
    brief,
    optional_int,
    places,
    trim,
)
from fakturownia_sync.client_decisions import holds_back
from fakturownia_sync.client_fields import client_view, crm_client_fields, fakturownia_client_fields
from fakturownia_sync.client_keys import email_key, tax_key
from fakturownia_sync.client_lookup import fakturownia_clients_by_external_id
from fakturownia_sync.client_merge import CRM, FAKTUROWNIA, snapshot_of
from fakturownia_sync.client_review_builder import ReviewBuilder, review_message
from fakturownia_sync.client_suggestions import LOOKALIKE_SCORE, similar_names
from fakturownia_sync.departments import DepartmentMap
from fakturownia_sync.errors import AmbiguousWriteError, ApiAuthError, ApiRejected, ApiUnavailable, RecordError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.records import Party
from fakturownia_sync.redaction import redact
from fakturownia_sync.state import ClientLink, StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.tax_numbers import check_tax_number

log = logging.getLogger(__name__)


class ClientCreation:
    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        departments: DepartmentMap,
        summary: Any,
        bases: ClientBases,
        review: ReviewBuilder,
        *,
        owner: str,
        stale_claim_minutes: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.departments = departments
        self.summary = summary
        self.bases = bases
        self.review = review
        self.owner = owner
        self.stale_claim_minutes = stale_claim_minutes
        self.clock = clock
        self._secrets = (fakturownia.account.token, crm.account.token)

    def create_unmatched(self, match: BulkMatch) -> None:
        unmatched_f = [int(i) for i in match.unmatched_fakturownia]
        unmatched_c = [int(i) for i in match.unmatched_crm]
        lookalikes_f, lookalikes_c = self._lookalikes(unmatched_f, unmatched_c)
        for f_id in unmatched_f:
            if self._creatable(FAKTUROWNIA, f_id, lookalikes_f.get(f_id, [])):
                self._guarded(FAKTUROWNIA, f_id, self._create_in_crm)
        for c_id in unmatched_c:
            if self._creatable(CRM, c_id, lookalikes_c.get(c_id, [])):
                self._guarded(CRM, c_id, self._create_in_fakturownia)
        self._note_resemblances()
        self._note_invalid_tax_ids()
        self.review.suggest()

    def _note_resemblances(self) -> None:
        """A `possible_duplicate` note on every pair the sync created whose Fakturownia client resembles another
        CRM client: the same name at the same place, or an e-mail shared with companies of other NIPs. Made
        from the links every run, so the note stays until a person acts on it; it never holds anything."""
        created = [
            (link.fakturownia_client_id, link.crm_client_id)
            for link in self.bases.links.values()
            if link.evidence == "created"
        ]
        created = [(f, c) for f, c in created if f in self.bases.fakturownia]
        if not created:
            return
        f_all, c_all = places(self.bases.fakturownia), places(self.bases.crm)
        found = similar_names(f_all[f_all["id"].isin([f for f, _ in created])], c_all, min_score=LOOKALIKE_SCORE)
        by_email: dict[str, set[int]] = {}
        taxes: dict[str, set[str]] = {}
        for records, is_crm in ((self.bases.fakturownia, False), (self.bases.crm, True)):
            for record_id, record in records.items():
                mail = email_key(record.get("email"))
                if mail is None:
                    continue
                if is_crm:
                    by_email.setdefault(mail, set()).add(record_id)
                tax = tax_key(record.get("tax_no"))
                if tax is not None:
                    taxes.setdefault(mail, set()).add(tax)
        for f_id, c_id in created:
            mail = email_key(self.bases.fakturownia[f_id].get("email"))
            shared = sorted(by_email.get(mail, set()) - {c_id}) if mail and len(taxes.get(mail, ())) >= 2 else []
            close = [(other, score) for other, score in found.get(f_id, []) if other != c_id]
            suggestions = [{"side": CRM, "id": o, "score": score, **brief(self.bases.crm.get(o))} for o, score in close]
            suggestions += [{"side": CRM, "id": o, "evidence": "email", **brief(self.bases.crm.get(o))} for o in shared]
            if suggestions:
                message = (
                    f"note: Fakturownia client {f_id} and CRM client {c_id} were created as a new client, though it "
                    "resembles another CRM client (the same name and place, or a shared e-mail) that a different "
                    "NIP or e-mail tells apart; merge them by hand if they are one"
                )
                self.review.add(FAKTUROWNIA, f_id, "possible_duplicate", message, self.bases.crm.get(c_id), suggestions)

    def _note_invalid_tax_ids(self) -> None:
        """A data-quality note for every record whose tax id is no tax id; it never holds anything."""
        for side, records in ((FAKTUROWNIA, self.bases.fakturownia), (CRM, self.bases.crm)):
            for record_id, record in records.items():
                checked = check_tax_number(str(record.get("tax_no") or ""))
                if checked.warning:
                    message = f"note: tax id {checked.raw!r} is not a valid tax id, so it is used as none; fix it"
                    self.review.add(side, record_id, "invalid_tax_id", message)

    def _lookalikes(
        self, unmatched_f: list[int], unmatched_c: list[int]
    ) -> tuple[dict[int, list[tuple[int, float]]], dict[int, list[tuple[int, float]]]]:
        f_all, c_all = places(self.bases.fakturownia), places(self.bases.crm)
        f_query = f_all[f_all["id"].isin(unmatched_f)]
        c_query = c_all[c_all["id"].isin(unmatched_c)]
        return similar_names(f_query, c_all), similar_names(c_query, f_all)

    def _creatable(self, side: str, record_id: int, lookalikes: list[tuple[int, float]]) -> bool:
        """Whether an unmatched record may be copied to the other side; otherwise it goes to review."""
        record = (self.bases.fakturownia if side == FAKTUROWNIA else self.bases.crm)[record_id]
        others = self.bases.crm if side == FAKTUROWNIA else self.bases.fakturownia
        other_side = CRM if side == FAKTUROWNIA else FAKTUROWNIA
        party = Party.from_client(record)
        if not (party.name or party.last_name or party.first_name):
            self.review.add(side, record_id, "no_name", "no name, first or last name: the other side refuses it")
            return False
        try:
            department = optional_int(record.get("department_id"))
            (self.departments.to_crm if side == FAKTUROWNIA else self.departments.to_fakturownia)(department)
        except RecordError as exc:
            self.review.add(side, record_id, exc.reason, exc.message)
            return False
        close = [(other, score) for other, score in lookalikes if score >= LOOKALIKE_SCORE]
        if close and holds_back(record, [others.get(other) or {} for other, _score in close]):
            suggestions = [
                {"side": other_side, "id": other, "score": score, **brief(others.get(other))} for other, score in close
            ]
            message = (
                "no NIP, e-mail or id matches, but a client with a very similar name at the same place exists "
                "and no NIP or e-mail tells the two apart"
            )
            self.review.add(side, record_id, "possible_duplicate", message, others.get(close[0][0]), suggestions)
            return False
        return True

    def _guarded(self, side: str, record_id: int, action: Callable[[int], None]) -> None:
        """Run one create; a refusal or an unexpected error reviews the record and the run carries on."""
        try:
            action(record_id)
        except ApiRejected as exc:
            self.review.add(side, record_id, f"{exc.api.lower()}_rejected", exc.message)
        except (ApiAuthError, ApiUnavailable):
            raise
        except Exception as exc:
            log.exception("%s client %s: unexpected error", side, record_id)
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            self.review.add(side, record_id, "unexpected_error", message)

    def _stale_before(self) -> datetime:
        return self.clock() - timedelta(minutes=self.stale_claim_minutes)

    def _create_in_crm(self, f_id: int) -> None:
        """Copy a Fakturownia client to the CRM under the claim `fakturownia:<id>` (shared with invoices)."""
        key = f"fakturownia:{f_id}"
        f_raw = self.bases.fakturownia[f_id]
        if not self.store.claim_crm_client(key, self.owner):
            claimed_id, claimed_by, _at = self.store.crm_client_claim(key) or (None, "", None)
            if claimed_id is not None:
                self._link_created(f_id, int(claimed_id), "created")
                return
            if not self.store.take_over_crm_client_claim(key, self.owner, stale_before=self._stale_before()):
                log.info("Fakturownia client %s: run %s is creating its CRM client right now", f_id, claimed_by)
                self.summary.deferred += 1
                return
            # Ours or a dead run's. Had that create reached the CRM, this run's full CRM read would have
            # shown the client with our external id and the matcher would have linked it: create it.
        crm_department = self.departments.to_crm(optional_int(f_raw.get("department_id")))
        fields = crm_client_fields(
            Party.from_client(f_raw),
            fakturownia_client_id=f_id,
            crm_department_id=crm_department,
        )
        try:
            created = self.crm.create_client(fields)
        except AmbiguousWriteError as exc:
            log.warning("Fakturownia client %s: %s; the next try looks for it before creating again", f_id, exc)
            self.summary.unconfirmed += 1
            return
        except ApiRejected:
            self.store.release_crm_client_claim(key)  # refused: nothing was created
            raise
        c_id = int(created["id"])
        self.store.confirm_crm_client(key, c_id)
        self.bases.crm[c_id] = trim(created, CRM_RECORD_FIELDS)
        self.summary.created_in_crm += 1
        self._link_created(f_id, c_id, "created")

    def _create_in_fakturownia(self, c_id: int) -> None:
        """Copy a CRM client to Fakturownia under the claim `crm:<id>`; `external_id` names the CRM client."""
        key = f"crm:{c_id}"
        c_raw = self.bases.crm[c_id]
        if not self.store.claim_fakturownia_client(key, self.owner):
            claimed_id, claimed_by, _at = self.store.fakturownia_client_claim(key) or (None, "", None)
            if claimed_id is not None:
                self._link_created(int(claimed_id), c_id, "created")
                return
            if not self.store.take_over_fakturownia_client_claim(key, self.owner, stale_before=self._stale_before()):
                log.info("CRM client %s: run %s is creating its Fakturownia client right now", c_id, claimed_by)
                self.summary.deferred += 1
                return
            found = fakturownia_clients_by_external_id(self.fakturownia, str(c_id))
            if len(found) > 1:
                ids = tuple(int(r["id"]) for r in found)
                self.review.add(
                    CRM, c_id, "ambiguous_external_id", review_message("ambiguous_external_id", CRM, c_id, ids)
                )
                return
            if found:
                record = trim(found[0], MIRROR_FIELDS)
                self.bases.remember_fakturownia(record)
                self.store.confirm_fakturownia_client(key, int(record["id"]))
                self.summary.creates_recovered += 1
                self._link_created(int(record["id"]), c_id, "external_id")
                return
        f_department = self.departments.to_fakturownia(optional_int(c_raw.get("department_id")))
        fields = fakturownia_client_fields(
            c_raw, crm_client_id=c_id, fakturownia_department_id=f_department, departments=self.departments.synced
        )
        try:
            created = self.fakturownia.create_client(fields)
        except AmbiguousWriteError as exc:
            log.warning("CRM client %s: %s; the next try looks for it before creating again", c_id, exc)
            self.summary.unconfirmed += 1
            return
        except ApiRejected:
            self.store.release_fakturownia_client_claim(key)
            raise
        record = trim(created, MIRROR_FIELDS)
        self.store.confirm_fakturownia_client(key, int(record["id"]))
        self.bases.remember_fakturownia(record)
        self.summary.created_in_fakturownia += 1
        self._link_created(int(record["id"]), c_id, "created")

    def _link_created(self, f_id: int, c_id: int, evidence: str) -> None:
        """Link a pair one side of which was just created, with both sides' values as the snapshot."""
        f_raw, c_raw = self.bases.fakturownia.get(f_id), self.bases.crm.get(c_id)
        snapshot = snapshot_of(client_view(f_raw), client_view(c_raw)) if f_raw and c_raw else None
        if not self.store.link_clients(f_id, c_id, evidence, snapshot):
            existing = self.store.client_link(f_id)
            if existing is None or existing.crm_client_id != c_id:
                message = (
                    f"Fakturownia client {f_id} and CRM client {c_id} belong together, but one is linked elsewhere"
                )
                self.review.add(FAKTUROWNIA, f_id, "duplicate_of_linked", message, c_raw)
            return
        self.bases.links[f_id] = ClientLink(f_id, c_id, evidence, snapshot)
        self.bases.linked_crm.add(c_id)
