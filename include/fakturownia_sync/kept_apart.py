"""Pairs a person told apart on the client review list, taken out of the bulk matcher's answer.

`bulk_matching.match_client_bases` ends here, so every caller (the client sync over both whole bases, the
invoices sync's `client_matching.CrmClientIndex` over one record's component) applies a person's "different"
by this one rule: two records told apart are two companies, and so are the copies the sync made of them (a
record and its linked partner are one company). A pair the keys matched is split into two free records, and a
record held for review only over records told apart from it is free too; both then go the way of any free
record (created on the other side). Same-side duplicates are no resemblance between the two systems and stay.
Every decision is made per pair or per review row, so a component gets the answer the whole bases give.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fakturownia_sync.bulk_matching import BulkMatch

FAKTUROWNIA, CRM = "fakturownia", "crm"


def told_apart_pairs(links: Iterable[tuple[int, int]], apart: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Every (Fakturownia id, CRM id) pair of records that belong to two companies a person told apart. A
    company is a record and its linked partner: of a pair (f, c) told apart, f and c are apart, and so are
    the copy of c in Fakturownia and the copy of f in the CRM (`ClientBases.told_apart` reads the same)."""
    crm_of = {int(f): int(c) for f, c in links}
    fakturownia_of = {c: f for f, c in crm_of.items()}
    pairs = set()
    for f, c in apart:
        pairs.add((int(f), int(c)))
        if int(c) in fakturownia_of and int(f) in crm_of:
            pairs.add((fakturownia_of[int(c)], crm_of[int(f)]))
    return pairs


def keep_apart(match: BulkMatch, links: Iterable[tuple[int, int]], apart: Iterable[tuple[int, int]]) -> BulkMatch:
    """The matcher's answer less what a person told apart (see the module docstring): a split pair and a
    record held only over records told apart from it become free records, to be created on the other side."""
    pairs = told_apart_pairs(links, apart)
    if not pairs:
        return match
    split = np.array(
        [
            (int(f), int(c)) in pairs
            for f, c in zip(match.matches["fakturownia_id"], match.matches["crm_id"], strict=True)
        ],
        dtype=bool,
    )
    freed = {FAKTUROWNIA: match.matches["fakturownia_id"][split].tolist(), CRM: match.matches["crm_id"][split].tolist()}
    keep = []
    for row in match.review.itertuples(index=False):
        own = int(row.id)
        candidates = {int(other) for other in row.candidates}
        apart_from = {c for f, c in pairs if f == own} if row.side == FAKTUROWNIA else {f for f, c in pairs if c == own}
        released = not str(row.reason).startswith("duplicate_in_") and bool(candidates) and candidates <= apart_from
        if released:
            freed[row.side].append(own)
        keep.append(not released)
    return replace(
        match,
        matches=match.matches[~split].reset_index(drop=True),
        review=match.review[np.array(keep, dtype=bool)].reset_index(drop=True),
        unmatched_fakturownia=np.concatenate(
            [match.unmatched_fakturownia, np.array(freed[FAKTUROWNIA], dtype=np.int64)]
        ),
        unmatched_crm=np.concatenate([match.unmatched_crm, np.array(freed[CRM], dtype=np.int64)]),
    )
