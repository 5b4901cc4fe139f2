"""The bulk matcher applied to one record: the invoices sync's per-buyer look-up of the CRM client.

The invoices sync needs one buyer's CRM client at a time; the client sync matches both whole bases with
`bulk_matching.match_client_bases`. Two implementations of the rules would drift (they did: an external-id
hint taken without checking the NIP, one-to-one checked on one side only, links ignored for a buyer with no
client card). So there is one: this index runs `match_client_bases` itself, over the record's *component*,
i.e. every record, on either side, that shares a key with it (tax id, e-mail, external ids), and every record
sharing a key with those, and so on. Every stage of the matcher only relates records that share a key, so
the component decides a record exactly as both whole bases would (a property test holds the two to the same
answer). Existing links come along, so a linked record is never matched again, and so do the pairs a person
told apart on the review page (`apart`): the matcher keeps them apart here as it does in the client sync.

A buyer typed on a document without a client card is first looked for among the Fakturownia client cards
(the same valid tax id on one card, else the same e-mail on one card that no tax id or name contradicts):
that card is the company, and its decision is the buyer's. Otherwise the buyer is matched as one more
Fakturownia record, `BUYER_ID`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pandas as pd

from fakturownia_sync.bulk_matching import crm_frame, fakturownia_frame, match_client_bases
from fakturownia_sync.client_decisions import LINK, ClientDecision, decision_of
from fakturownia_sync.client_keys import email_keys, names_unrelated, tax_keys

BUYER_ID = 0  # Fakturownia ids are positive: a buyer without a card is matched under this id
FAKTUROWNIA, CRM = "fakturownia", "crm"

Node = tuple[str, int]


def _keys(frame: pd.DataFrame) -> list[tuple[int, int, str | None, str | None]]:
    """(id, hint, tax key, e-mail key) of each row, computed exactly as the bulk matcher computes them."""
    taxes, emails = tax_keys(frame["tax_no"]), email_keys(frame["email"])
    return list(zip(frame["id"].tolist(), frame["hint"].tolist(), taxes.tolist(), emails.tolist(), strict=True))


class CrmClientIndex:
    """Both client bases and their links, indexed by key, answering for one record at a time.

    Safe to share between writer threads: every method holds one re-entrant lock."""

    def __init__(
        self,
        crm_clients: Iterable[dict[str, Any]] = (),
        fakturownia_clients: Iterable[dict[str, Any]] = (),
        links: Iterable[tuple[int, int]] = (),
        apart: Iterable[tuple[int, int]] = (),
    ) -> None:
        self.apart = {(int(f), int(c)) for f, c in apart}  # (Fakturownia id, CRM id) pairs a person told apart
        self.records: dict[str, dict[int, dict[str, Any]]] = {FAKTUROWNIA: {}, CRM: {}}
        self.partner: dict[str, dict[int, int]] = {FAKTUROWNIA: {}, CRM: {}}
        self._tax: dict[str, set[Node]] = defaultdict(set)
        self._email: dict[str, set[Node]] = defaultdict(set)
        self._hint: dict[Node, set[Node]] = defaultdict(set)  # both directions of an external-id relation
        self._keys: dict[Node, tuple[int, str | None, str | None]] = {}
        self._cache: dict[Node, ClientDecision] = {}
        self._guard = threading.RLock()
        self.add_many(FAKTUROWNIA, fakturownia_clients)
        self.add_many(CRM, crm_clients)
        for f_id, c_id in links:
            self.add_link(f_id, c_id)

    # Keeping the picture current -----------------------------------------------------------------------

    def add(self, client: dict[str, Any]) -> None:
        """A CRM client (read or just created)."""
        self.add_many(CRM, [client])

    def add_many(self, side: str, records: Iterable[dict[str, Any]]) -> None:
        with self._guard:
            self._add_many(side, list(records))

    def _add_many(self, side: str, records: list[dict[str, Any]]) -> None:
        rows = [r for r in records if int(r["id"]) not in self.records[side]]
        if not rows:
            return
        self._cache.clear()
        frame = (fakturownia_frame if side == FAKTUROWNIA else crm_frame)(rows)
        for record, (record_id, hint, tax, email) in zip(rows, _keys(frame), strict=True):
            node = (side, int(record_id))
            self.records[side][node[1]] = record
            self._keys[node] = (int(hint), tax, email)
            if tax is not None:
                self._tax[tax].add(node)
            if email is not None:
                self._email[email].add(node)
            if hint >= 0:
                target: Node = (CRM if side == FAKTUROWNIA else FAKTUROWNIA, int(hint))
                self._hint[node].add(target)
                self._hint[target].add(node)

    def add_link(self, fakturownia_id: int, crm_id: int) -> None:
        with self._guard:
            self._cache.clear()
            self.partner[FAKTUROWNIA][int(fakturownia_id)] = int(crm_id)
            self.partner[CRM][int(crm_id)] = int(fakturownia_id)

    # Answers -------------------------------------------------------------------------------------------

    def decide(self, side: str, record_id: int) -> ClientDecision:
        """The decision the bulk matcher makes for this record of either side, given both bases and links."""
        node = (side, int(record_id))
        with self._guard:
            if node[1] in self.partner[side]:
                return ClientDecision(self.partner[side][node[1]], LINK)
            if node not in self._cache:
                self._decide_component(node)
            return self._cache[node]

    def match_card(self, fakturownia_id: int) -> ClientDecision:
        return self.decide(FAKTUROWNIA, fakturownia_id)

    def match_buyer(self, buyer: dict[str, Any]) -> ClientDecision:
        """A buyer without a client card (client-shaped fields): its card's decision, else its own."""
        with self._guard:
            return self._match_buyer(buyer)

    def card_for_buyer(self, buyer: dict[str, Any]) -> dict[str, Any] | None:
        """The one client card a buyer without a card names (the card `match_buyer` answers with), or None.
        That card is the buyer's company: a create for the buyer is claimed on the card's keys too."""
        with self._guard:
            cards = self._cards_naming(buyer, *self._buyer_keys(buyer))
            return self.records[FAKTUROWNIA][cards[0]] if len(cards) == 1 else None

    @staticmethod
    def _buyer_keys(buyer: dict[str, Any]) -> tuple[str | None, str | None]:
        [(_id, _hint, tax, email)] = _keys(fakturownia_frame([{**buyer, "id": BUYER_ID, "external_id": None}]))
        return tax, email

    def _match_buyer(self, buyer: dict[str, Any]) -> ClientDecision:
        tax, email = self._buyer_keys(buyer)
        cards = self._cards_naming(buyer, tax, email)
        if len(cards) == 1:
            return self.match_card(cards[0])
        if len(cards) > 1:
            return ClientDecision(None, reason="duplicate_in_fakturownia", candidates=tuple(sorted(cards)))
        record = {**buyer, "id": BUYER_ID, "external_id": None}
        self.records[FAKTUROWNIA][BUYER_ID] = record
        self._keys[(FAKTUROWNIA, BUYER_ID)] = (-1, tax, email)
        for index, key in ((self._tax, tax), (self._email, email)):
            if key is not None:
                index[key].add((FAKTUROWNIA, BUYER_ID))
        try:
            return self._decide_component((FAKTUROWNIA, BUYER_ID), cache=False)
        finally:
            del self.records[FAKTUROWNIA][BUYER_ID], self._keys[(FAKTUROWNIA, BUYER_ID)]
            for index, key in ((self._tax, tax), (self._email, email)):
                if key is not None:
                    index[key].discard((FAKTUROWNIA, BUYER_ID))

    def find_by_note(self, mark: str) -> int | None:
        """The CRM client whose note carries `mark` (how a client created for an anonymous buyer is found
        again after a lost answer); the lowest id when several do."""
        with self._guard:
            found = [i for i, record in self.records[CRM].items() if mark in str(record.get("note") or "")]
        return min(found) if found else None

    def _cards_naming(self, buyer: dict[str, Any], tax: str | None, email: str | None) -> list[int]:
        """Client cards a buyer's strong keys name: by tax id; else by e-mail, unless a key contradicts."""
        if tax is not None:
            by_tax = [i for side, i in self._tax.get(tax, ()) if side == FAKTUROWNIA]
            if by_tax:
                return by_tax
        if email is None:
            return []
        found = []
        for side, card_id in self._email.get(email, ()):
            if side != FAKTUROWNIA:
                continue
            card_tax, card = self._keys[(side, card_id)][1], self.records[side][card_id]
            if tax is not None and card_tax is not None and tax != card_tax:
                continue
            name = card.get("name") or " ".join(filter(None, (card.get("first_name"), card.get("last_name"))))
            if not names_unrelated(buyer.get("name"), name, buyer.get("post_code"), card.get("post_code")):
                found.append(card_id)
        return found

    def _component(self, start: Node) -> set[Node]:
        seen, todo = {start}, [start]
        while todo:
            node = todo.pop()
            _hint, tax, email = self._keys[node]
            neighbours = set(self._hint.get(node, ()))
            neighbours |= self._tax.get(tax, set()) if tax is not None else set()
            neighbours |= self._email.get(email, set()) if email is not None else set()
            for other in neighbours:
                if other not in seen and other[1] in self.records[other[0]]:
                    seen.add(other)
                    todo.append(other)
        return seen

    def _decide_component(self, start: Node, *, cache: bool = True) -> ClientDecision:
        component = self._component(start)
        if component == {start}:  # shares nothing with anyone: free, so new
            decision = ClientDecision(None)
            if cache:
                self._cache[start] = decision
            return decision
        f_ids = sorted(i for side, i in component if side == FAKTUROWNIA)
        c_ids = sorted(i for side, i in component if side == CRM)
        links = [(f, self.partner[FAKTUROWNIA][f]) for f in f_ids if f in self.partner[FAKTUROWNIA]]
        links += [(self.partner[CRM][c], c) for c in c_ids if c in self.partner[CRM]]
        match = match_client_bases(
            fakturownia_frame(self.records[FAKTUROWNIA][i] for i in f_ids),
            crm_frame(self.records[CRM][i] for i in c_ids),
            links,
            self.apart,
        )
        decisions = {node: decision_of(match, node[0], node[1], self.partner[node[0]]) for node in component}
        if cache:
            self._cache.update(decisions)
        return decisions[start]
