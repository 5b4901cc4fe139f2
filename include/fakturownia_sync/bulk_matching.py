"""Matching two whole client bases at once: Fakturownia's and the CRM's, vectorised with pandas.

Evidence, strongest first; each stage only decides records the stronger stages left free:

1. an existing link (state DB);
2. external ids: the Fakturownia client's `external_id` names a CRM id, or the CRM client's
   `external_ids.fakturownia_client_id` names the Fakturownia client. A Fakturownia `external_id` may have
   been set by another integration (a shop), so on its own it is vetoed when the NIPs, or lacking NIPs the
   e-mails, of the two records contradict it;
3. the NIP, normalised and checksum-validated (`client_keys.tax_keys`; an invalid NIP is no evidence);
4. the e-mail, case and whitespace folded; a pair is not matched by a shared e-mail when their valid NIPs
   differ, or when their names have nothing in common and their post codes differ
   (`client_keys.names_unrelated`: an accountant's address on the cards of several companies).

A stage matches a pair only when the evidence is one-to-one over *both whole bases*, linked records
included. Otherwise nothing is written for the free records involved; they go to review as
`ambiguous_<evidence>` (the evidence points at several records), `duplicate_of_linked` (it points only at
records already linked elsewhere) or `duplicate_in_fakturownia` / `duplicate_in_crm` (the same key twice in
one system and not at all in the other). Name similarity never matches anything (see `client_suggestions`).

An e-mail held by records with two or more different valid NIPs is a shared address (an accountant's, a
group's): ambiguity on it never holds a record that has a valid NIP of its own. Such a record stays free (it
is created on the other side) and the resemblance is returned as a `possible_duplicate` note; records on
that address without a NIP stay under review, since nothing says which company they are.

Candidate pairs come from joins on the keys (blocking), never from all pairs. A key shared by more than
`MAX_BLOCK_PAIRS` pairs is not expanded: its free records go to review as ambiguous.

A person's word beats every key: the pairs told apart on the review page (`apart`) are kept apart by
`kept_apart.keep_apart`, the last step of the matcher, whichever sync asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fakturownia_sync.client_fields import FAKTUROWNIA_CLIENT_KEY
from fakturownia_sync.client_keys import email_keys, names_unrelated_pairs, tax_keys
from fakturownia_sync.ids import as_id
from fakturownia_sync.kept_apart import keep_apart
from fakturownia_sync.sugester_client import external_ids_of

MAX_BLOCK_PAIRS = 400
FREE, LINKED, REVIEW = 0, 1, 2
FAKTUROWNIA, CRM = "fakturownia", "crm"


@dataclass
class BulkMatch:
    """The outcome: new pairs, records for review, and the free records left to create on the other side."""

    matches: pd.DataFrame  # fakturownia_id, crm_id, evidence
    review: pd.DataFrame  # side, id, reason, candidates (tuple of ids; of the other side unless a duplicate)
    unmatched_fakturownia: np.ndarray
    unmatched_crm: np.ndarray
    notes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["side", "id", "reason", "candidates"]))

    def review_reasons(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.review["reason"].value_counts().sort_index().items()}


def _digits_id(value: Any) -> int:
    """An id for an int64 column: -1 stands for "no id" (see `ids.as_id`)."""
    return as_id(value) or -1


def _display_name(record: dict[str, Any]) -> str:
    name = record.get("name") or ""
    return name or " ".join(filter(None, (record.get("first_name"), record.get("last_name"))))


def fakturownia_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The columns the matcher reads from Fakturownia client records."""
    rows = list(records)
    return pd.DataFrame(
        {
            "id": np.array([int(r["id"]) for r in rows], dtype=np.int64),
            "hint": np.array([_digits_id(r.get("external_id")) for r in rows], dtype=np.int64),
            "tax_no": [r.get("tax_no") for r in rows],
            "email": [r.get("email") for r in rows],
            "name": [_display_name(r) for r in rows],
            "post_code": [r.get("post_code") for r in rows],
        }
    )


def crm_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The columns the matcher reads from CRM client records."""
    rows = list(records)
    return pd.DataFrame(
        {
            "id": np.array([int(r["id"]) for r in rows], dtype=np.int64),
            "hint": np.array(
                [_digits_id(external_ids_of(r).get(FAKTUROWNIA_CLIENT_KEY)) for r in rows], dtype=np.int64
            ),
            "tax_no": [r.get("tax_no") for r in rows],
            "email": [r.get("email") for r in rows],
            "name": [_display_name(r) for r in rows],
            "post_code": [r.get("post_code") for r in rows],
        }
    )


class _Side:
    """One system's records with their keys and what the matcher decided about each so far."""

    def __init__(self, name: str, frame: pd.DataFrame) -> None:
        self.name = name
        frame = frame.drop_duplicates("id").set_index("id")
        self.ids = frame.index
        self.hint = frame["hint"]
        self.tax = tax_keys(frame["tax_no"])
        self.email = email_keys(frame["email"])
        self.names = frame["name"] if "name" in frame else pd.Series("", index=self.ids, dtype=object)
        self.post_code = frame["post_code"] if "post_code" in frame else pd.Series(None, index=self.ids, dtype=object)
        self.status = pd.Series(FREE, index=self.ids, dtype=np.int8)
        self.reviews: list[pd.DataFrame] = []

    def free(self, ids: pd.Series | np.ndarray) -> np.ndarray:
        return self.status.reindex(ids).to_numpy() == FREE

    def send_to_review(self, ids: pd.Series, reasons: pd.Series, candidates: pd.Series) -> None:
        """Review the given free records (first reason wins: stronger evidence came first)."""
        keep = self.free(ids)
        if not keep.any():
            return
        ids, reasons, candidates = ids[keep], reasons[keep], candidates[keep]
        self.status.loc[ids.to_numpy()] = REVIEW
        self.reviews.append(
            pd.DataFrame(
                {"side": self.name, "id": ids.to_numpy(), "reason": reasons.to_numpy(), "candidates": list(candidates)}
            )
        )


def _veto(pairs: pd.DataFrame, f: _Side, c: _Side, *, email_too: bool) -> np.ndarray:
    """True for pairs whose own data contradicts them: both NIPs valid and different (or e-mails)."""
    tax_f = f.tax.reindex(pairs["f"]).to_numpy()
    tax_c = c.tax.reindex(pairs["c"]).to_numpy()
    both = pd.notna(tax_f) & pd.notna(tax_c)
    veto = both & (tax_f != tax_c)
    if email_too:
        mail_f = f.email.reindex(pairs["f"]).to_numpy()
        mail_c = c.email.reindex(pairs["c"]).to_numpy()
        veto |= ~both & pd.notna(mail_f) & pd.notna(mail_c) & (mail_f != mail_c)
    return veto


def _candidates_by(ids: pd.Series, others: pd.Series) -> pd.Series:
    """For each id, the sorted tuple of ids it is paired with."""
    grouped = pd.DataFrame({"id": ids.to_numpy(), "other": others.to_numpy()}).groupby("id")["other"]
    return grouped.agg(lambda values: tuple(sorted({int(v) for v in values})))


def _resolve(pairs: pd.DataFrame, f: _Side, c: _Side, evidence: str) -> list[pd.DataFrame]:
    """Accept one-to-one pairs of free records; send the free records of every other pair to review."""
    if pairs.empty:
        return []
    pairs = pairs.drop_duplicates(ignore_index=True)
    degree_f = pairs["f"].map(pairs["f"].value_counts()).to_numpy()
    degree_c = pairs["c"].map(pairs["c"].value_counts()).to_numpy()
    accept = (degree_f == 1) & (degree_c == 1) & f.free(pairs["f"]) & c.free(pairs["c"])
    matched = pairs[accept]
    f.status.loc[matched["f"].to_numpy()] = LINKED
    c.status.loc[matched["c"].to_numpy()] = LINKED
    rest = pairs[~accept]
    for side, own, other, other_side in ((f, "f", "c", c), (c, "c", "f", f)):
        touched = rest[side.free(rest[own])]
        if touched.empty:
            continue
        candidates = _candidates_by(touched[own], touched[other])
        linked = other_side.status.reindex(touched[other]).to_numpy() == LINKED
        all_linked = pd.Series(linked, index=touched.index).groupby(touched[own]).all()
        reasons = pd.Series(
            np.where(all_linked, "duplicate_of_linked", f"ambiguous_{evidence}"), index=all_linked.index
        )
        index = candidates.index.to_series()
        side.send_to_review(index, reasons.reindex(index), candidates.reindex(index))
    return [pd.DataFrame({"fakturownia_id": matched["f"], "crm_id": matched["c"], "evidence": evidence})]


def _key_pairs(f: _Side, c: _Side, key: str, evidence: str) -> pd.DataFrame:
    """Candidate pairs sharing a key (blocking); crowded keys go to review instead of being expanded."""
    left = getattr(f, key).dropna()
    right = getattr(c, key).dropna()
    size_f, size_c = left.value_counts(), right.value_counts()
    shared = size_f.index.intersection(size_c.index)
    crowded = shared[(size_f[shared] * size_c[shared]).to_numpy() > MAX_BLOCK_PAIRS]
    if len(crowded):
        for side, keys in ((f, left), (c, right)):
            members = keys[keys.isin(crowded)]
            ids = members.index.to_series()
            side.send_to_review(
                ids,
                pd.Series(f"ambiguous_{evidence}", index=ids.index),
                pd.Series([()] * len(ids), index=ids.index, dtype=object),
            )
        left, right = left[~left.isin(crowded)], right[~right.isin(crowded)]
    left = left[left.isin(shared)]
    right = right[right.isin(shared)]
    joined = pd.DataFrame({"f": left.index, "k": left.to_numpy()}).merge(
        pd.DataFrame({"c": right.index, "k": right.to_numpy()}), on="k"
    )
    return joined[["f", "c"]]


def _same_side_duplicates(side: _Side, other: _Side, key: str, *, distinct_tax: bool) -> None:
    """Records sharing a key inside one system, where the other system has no such key: reported only."""
    keys = getattr(side, key).dropna()
    keys = keys[keys.duplicated(keep=False) & ~keys.isin(set(getattr(other, key).dropna()))]
    if keys.empty:
        return
    if distinct_tax:
        # Several companies may share one address (their accountant's); distinct valid NIPs say so.
        taxes = side.tax.reindex(keys.index)
        distinct = taxes.groupby(keys.to_numpy()).nunique()
        keys = keys[keys.map(distinct).to_numpy() < 2]
    if keys.empty:
        return
    members = pd.DataFrame({"id": keys.index, "k": keys.to_numpy()})
    groups = members.groupby("k")["id"].agg(lambda ids: tuple(sorted(int(i) for i in ids)))
    ids = members["id"]
    candidates = pd.Series(
        [tuple(i for i in groups[k] if i != own) for own, k in zip(members["id"], members["k"], strict=True)],
        index=ids.index,
        dtype=object,
    )
    side.send_to_review(ids, pd.Series(f"duplicate_in_{side.name}", index=ids.index), candidates)


def match_client_bases(
    fakturownia: pd.DataFrame,
    crm: pd.DataFrame,
    links: Iterable[tuple[int, int]] = (),
    apart: Iterable[tuple[int, int]] = (),
) -> BulkMatch:
    """Match two client bases (frames from `fakturownia_frame` / `crm_frame`) given the existing links and
    the (Fakturownia id, CRM id) pairs a person told apart."""
    f, c = _Side(FAKTUROWNIA, fakturownia), _Side(CRM, crm)
    links = list(links)
    linked = pd.DataFrame(links, columns=["f", "c"], dtype=np.int64)
    f.status.loc[linked["f"][linked["f"].isin(f.ids)].to_numpy()] = LINKED
    c.status.loc[linked["c"][linked["c"].isin(c.ids)].to_numpy()] = LINKED
    matches: list[pd.DataFrame] = []

    by_f = pd.DataFrame({"f": f.hint.index, "c": f.hint.to_numpy()})
    by_f = by_f[by_f["c"].isin(c.ids)]
    by_c = pd.DataFrame({"f": c.hint.to_numpy(), "c": c.hint.index})
    by_c = by_c[by_c["f"].isin(f.ids)]
    confirmed = by_f.merge(by_c, on=["f", "c"], how="left", indicator=True)["_merge"].eq("both").to_numpy()
    by_f = by_f[confirmed | ~_veto(by_f, f, c, email_too=True)]
    matches += _resolve(pd.concat([by_f, by_c], ignore_index=True), f, c, "external_id")

    for key, evidence in (("tax", "nip"), ("email", "email")):
        pairs = _key_pairs(f, c, key, evidence)
        if evidence == "email" and not pairs.empty:
            pairs = pairs[~_veto(pairs, f, c, email_too=False)]
            unrelated = names_unrelated_pairs(
                f.names.reindex(pairs["f"]),
                c.names.reindex(pairs["c"]),
                f.post_code.reindex(pairs["f"]),
                c.post_code.reindex(pairs["c"]),
            )
            pairs = pairs[~unrelated]
        matches += _resolve(pairs, f, c, evidence)
        _same_side_duplicates(f, c, key, distinct_tax=evidence == "email")
        _same_side_duplicates(c, f, key, distinct_tax=evidence == "email")

    notes = [_release_shared_address_holders(side, f, c) for side in (f, c)]

    columns = {"fakturownia_id": np.int64, "crm_id": np.int64, "evidence": object}
    found = pd.concat(matches, ignore_index=True) if matches else pd.DataFrame(columns=list(columns))
    reviews = f.reviews + c.reviews
    review = (
        pd.concat(reviews, ignore_index=True)
        if reviews
        else pd.DataFrame(columns=["side", "id", "reason", "candidates"])
    )
    match = BulkMatch(
        matches=found.astype(columns),
        review=review,
        unmatched_fakturownia=f.status.index[f.status.to_numpy() == FREE].to_numpy(),
        unmatched_crm=c.status.index[c.status.to_numpy() == FREE].to_numpy(),
        notes=pd.concat(notes, ignore_index=True),
    )
    return keep_apart(match, links, apart)


def _release_shared_address_holders(side: _Side, f: _Side, c: _Side) -> pd.DataFrame:
    """Free the records with a valid NIP held as `ambiguous_email` on a shared address; return them as notes."""
    columns = ["side", "id", "reason", "candidates"]
    reviews = pd.concat(side.reviews, ignore_index=True) if side.reviews else pd.DataFrame(columns=columns)
    held = reviews[reviews["reason"].eq("ambiguous_email")]
    held = held[side.tax.reindex(held["id"]).notna().to_numpy()]
    if held.empty:
        return pd.DataFrame(columns=columns)
    holders = pd.concat(
        [pd.DataFrame({"email": s.email.to_numpy(), "tax": s.tax.to_numpy()}) for s in (f, c)], ignore_index=True
    ).dropna()
    distinct = holders.groupby("email")["tax"].nunique()
    shared = set(distinct.index[distinct.to_numpy() >= 2])
    freed = held[side.email.reindex(held["id"]).isin(shared).to_numpy()]
    if freed.empty:
        return pd.DataFrame(columns=columns)
    side.status.loc[freed["id"].to_numpy()] = FREE
    side.reviews = [reviews[~reviews.index.isin(freed.index)]]
    return freed.assign(reason="possible_duplicate").reset_index(drop=True)
