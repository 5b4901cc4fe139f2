"""The client review list of one client-sync run: what the sync could not decide, with the evidence.

An entry is keyed by its subject (`fakturownia:<id>` or `crm:<id>`); the first reason found for a subject
stands, because stronger evidence is weighed first. Entries with no candidates get look-alikes by name and
place as suggestions, so a person sees what the record might be.
"""

from __future__ import annotations

from typing import Any

from fakturownia_sync.client_bases import ClientBases, brief, places
from fakturownia_sync.client_merge import CRM, FAKTUROWNIA
from fakturownia_sync.client_suggestions import similar_names
from fakturownia_sync.review import ReviewEntry, subject


class ReviewBuilder:
    def __init__(self, bases: ClientBases) -> None:
        self.bases = bases
        self.entries: dict[str, ReviewEntry] = {}

    def from_matcher(self, side: str, record_id: int, reason: str, candidates: tuple[int, ...]) -> None:
        """A review entry from the matcher; candidates are of the other side, or of the same for duplicates."""
        same_side = reason.startswith("duplicate_in_")
        bases = self.bases
        own, other = (bases.fakturownia, bases.crm) if side == FAKTUROWNIA else (bases.crm, bases.fakturownia)
        pool = own if same_side else other
        candidate_side = side if same_side else (CRM if side == FAKTUROWNIA else FAKTUROWNIA)
        suggestions = [
            {"side": candidate_side, "id": cid, "evidence": reason, **brief(pool.get(cid))} for cid in candidates
        ]
        # The record shown beside this one: the first candidate a person has not told apart from it yet, so that
        # deciding "different" on each pair shown works through every candidate.
        apart = set() if same_side else bases.told_apart(side, record_id)
        shown = [cid for cid in candidates if cid not in apart] or list(candidates)
        first = pool.get(shown[0]) if shown and not same_side else None
        self.add(side, record_id, reason, review_message(reason, side, record_id, candidates), first, suggestions)

    def add(
        self,
        side: str,
        record_id: int,
        reason: str,
        message: str,
        partner: dict[str, Any] | None = None,
        suggestions: list[dict[str, Any]] | None = None,
    ) -> None:
        key = subject(side, record_id)
        if key in self.entries:
            return  # the first (strongest) reason stands
        own = (self.bases.fakturownia if side == FAKTUROWNIA else self.bases.crm).get(record_id)
        f_record, c_record = (own, partner) if side == FAKTUROWNIA else (partner, own)
        self.entries[key] = ReviewEntry(
            subject=key,
            reason=reason,
            message=message,
            fakturownia_client_id=int(f_record["id"]) if f_record else None,
            crm_client_id=int(c_record["id"]) if c_record else None,
            fakturownia_record=f_record,
            crm_record=c_record,
            suggestions=suggestions or [],
        )

    def suggest(self) -> None:
        """Add look-alikes by name and place to review entries that have no candidates yet."""
        bare = [entry for entry in self.entries.values() if not entry.suggestions]
        if not bare:
            return
        f_ids = [e.fakturownia_client_id for e in bare if e.subject.startswith(FAKTUROWNIA) and e.fakturownia_client_id]
        c_ids = [e.crm_client_id for e in bare if e.subject.startswith(CRM) and e.crm_client_id]
        f_all, c_all = places(self.bases.fakturownia), places(self.bases.crm)
        found_f = similar_names(f_all[f_all["id"].isin(f_ids)], c_all)
        found_c = similar_names(c_all[c_all["id"].isin(c_ids)], f_all)
        for entry in bare:
            side, _, raw_id = entry.subject.partition(":")
            found = (found_f if side == FAKTUROWNIA else found_c).get(int(raw_id), [])
            if not found:
                continue
            others, other_side = (self.bases.crm, CRM) if side == FAKTUROWNIA else (self.bases.fakturownia, FAKTUROWNIA)
            suggestions = [{"side": other_side, "id": i, "score": s, **brief(others.get(i))} for i, s in found]
            self.entries[entry.subject] = ReviewEntry(**{**entry.as_row(), "suggestions": suggestions})


def review_message(reason: str, side: str, record_id: int, candidates: tuple[int, ...]) -> str:
    own = "Fakturownia" if side == FAKTUROWNIA else "CRM"
    other = "CRM" if side == FAKTUROWNIA else "Fakturownia"
    listed = ", ".join(str(c) for c in candidates[:10]) or "many"
    if reason.startswith("ambiguous_"):
        evidence = reason.removeprefix("ambiguous_").replace("_", " ")
        return f"{own} client {record_id}: its {evidence} matches more than one client ({other} {listed})"
    if reason == "duplicate_of_linked":
        return f"{own} client {record_id} matches {other} client(s) {listed}, already linked to another client"
    if reason.startswith("duplicate_in_"):
        return f"{own} client {record_id} has the same NIP or e-mail as {own} client(s) {listed}"
    return f"{own} client {record_id}: {reason}"
