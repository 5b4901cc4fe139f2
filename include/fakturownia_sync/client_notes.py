"""Notes on the review list about created clients and bad tax ids: they tell a person what to check, and never
hold a record back (DESIGN.md "Client decisions"). Made from the run's picture every run, after the creates, so
a note stays until a person acts on it."""

from __future__ import annotations

from fakturownia_sync.client_bases import ClientBases, brief, places
from fakturownia_sync.client_keys import email_key, tax_key
from fakturownia_sync.client_merge import CRM, FAKTUROWNIA
from fakturownia_sync.client_review_builder import ReviewBuilder
from fakturownia_sync.client_suggestions import LOOKALIKE_SCORE, similar_names
from fakturownia_sync.tax_numbers import check_tax_number


def note_resemblances(bases: ClientBases, review: ReviewBuilder) -> None:
    """A `possible_duplicate` note on every pair the sync created whose Fakturownia client resembles another
    CRM client: the same name at the same place, or an e-mail shared with companies of other NIPs. Made
    from the links every run, so the note stays until a person acts on it; it never holds anything."""
    created = [
        (link.fakturownia_client_id, link.crm_client_id) for link in bases.links.values() if link.evidence == "created"
    ]
    created = [(f, c) for f, c in created if f in bases.fakturownia]
    if not created:
        return
    f_all, c_all = places(bases.fakturownia), places(bases.crm)
    found = similar_names(f_all[f_all["id"].isin([f for f, _ in created])], c_all, min_score=LOOKALIKE_SCORE)
    by_email: dict[str, set[int]] = {}
    taxes: dict[str, set[str]] = {}
    for records, is_crm in ((bases.fakturownia, False), (bases.crm, True)):
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
        mail = email_key(bases.fakturownia[f_id].get("email"))
        shared = sorted(by_email.get(mail, set()) - {c_id}) if mail and len(taxes.get(mail, ())) >= 2 else []
        apart = bases.told_apart(FAKTUROWNIA, f_id) | {c_id}
        shared = [other for other in shared if other not in apart]
        close = [(other, score) for other, score in found.get(f_id, []) if other not in apart]
        suggestions = [{"side": CRM, "id": o, "score": score, **brief(bases.crm.get(o))} for o, score in close]
        suggestions += [{"side": CRM, "id": o, "evidence": "email", **brief(bases.crm.get(o))} for o in shared]
        if suggestions:
            message = (
                f"note: Fakturownia client {f_id} and CRM client {c_id} were created as a new client, though it "
                "resembles another CRM client (the same name and place, or a shared e-mail) that a different "
                "NIP or e-mail tells apart; merge them by hand if they are one"
            )
            review.add(FAKTUROWNIA, f_id, "possible_duplicate", message, bases.crm.get(c_id), suggestions)


def note_invalid_tax_ids(bases: ClientBases, review: ReviewBuilder) -> None:
    """A data-quality note for every record whose tax id is no tax id; it never holds anything."""
    for side, records in ((FAKTUROWNIA, bases.fakturownia), (CRM, bases.crm)):
        for record_id, record in records.items():
            checked = check_tax_number(str(record.get("tax_no") or ""))
            if checked.warning:
                message = f"note: tax id {checked.raw!r} is not a valid tax id, so it is used as none; fix it"
                review.add(side, record_id, "invalid_tax_id", message)
