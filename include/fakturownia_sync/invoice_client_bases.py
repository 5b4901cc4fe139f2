"""Both client bases as an invoices → deals run reads them: once per run, and only when an invoice needs them.

The per-record client decision (`client_matching.CrmClientIndex`, the bulk matcher applied to one record) needs
both whole bases for its one-to-one rule, so the first invoice whose buyer is not linked yet makes the run read
the Fakturownia client cards and the CRM's clients once, page by page, with the state DB's client links; a
backfill hands both bases in instead, read once for all its windows (`use`). A card newer than that pass is
read alone when an invoice names it. Every CRM client the run creates is added at once, and again to an index
read anew after a lost answer (`reload`) while other threads were creating, so no thread decides against a base
that lacks a client this run made. The pairs a person told apart on the client review list are read with the
links (`StateStore.told_apart_in_force`): the invoices sync keeps them apart even before the client sync has
applied the decision, by the matcher's own rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from fakturownia_sync.client_matching import FAKTUROWNIA, CrmClientIndex
from fakturownia_sync.errors import ApiNotFound
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient

BasesSource = Callable[[], tuple[Iterable[dict[str, Any]], Iterable[dict[str, Any]]]]
"""`source()` → (CRM clients, Fakturownia client cards)."""


class InvoiceClientBases:
    """The client bases of one run, shared by its writer threads."""

    def __init__(self, fakturownia: FakturowniaClient, crm: SugesterClient, store: StateStore) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self._lock = threading.Lock()
        self._index: CrmClientIndex | None = None
        self._created: list[dict[str, Any]] = []
        self._cards: dict[int, dict[str, Any] | None] = {}  # None: the card is gone
        self._source: BasesSource | None = None
        self._on_created: Callable[[dict[str, Any]], None] | None = None

    def use(self, source: BasesSource, on_created: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Take (CRM clients, Fakturownia client cards) from `source` instead of reading both lists, e.g. a
        backfill window from the state DB's mirrors (read once per backfill); `on_created` hears of every CRM
        client created, so later windows see it. A card missing from `source` is still read alone, and a
        re-read after a lost answer (`reload`) still asks the CRM itself."""
        self._source, self._on_created = source, on_created

    def index(self, *, reload: bool = False) -> CrmClientIndex:
        """Both client bases and the links, read once per run and only when an invoice needs a client not
        linked yet: one pass over each list (the matcher needs both whole bases for its one-to-one rule)."""
        with self._lock:
            handed: Iterable[dict[str, Any]] | None = None
            if self._index is None and self._source is not None:
                handed, handed_cards = self._source()
                self._cards.update({int(card["id"]): card for card in handed_cards})
            elif self._index is None:
                self._cards.update({int(card["id"]): card for card in self.fakturownia.iter_client_cards()})
            if self._index is None or reload:
                cards = [card for card in self._cards.values() if card is not None]
                links = [(link.fakturownia_client_id, link.crm_client_id) for link in self.store.all_client_links()]
                apart = self.store.told_apart_in_force()
                index = CrmClientIndex(handed if handed is not None else self.crm.iter_clients(), cards, links, apart)
                for created in self._created:  # created by other threads while the scan ran
                    index.add(created)
                self._index = index
            return self._index

    def card(self, client_id: int) -> dict[str, Any] | None:
        """A client card: from the one pass over the list, or read alone when it is newer than that pass."""
        index = self.index()
        with self._lock:
            if client_id in self._cards:
                return self._cards[client_id]
        try:
            card = self.fakturownia.get_client(client_id)
        except ApiNotFound:
            card = None
        with self._lock:
            self._cards[client_id] = card
        if card is not None:
            index.add_many(FAKTUROWNIA, [card])
        return card

    def add_created(self, created: dict[str, Any]) -> None:
        """A CRM client this run created: in the index now and in any index read later."""
        with self._lock:
            self._created.append(created)
        self.index().add(created)
        if self._on_created is not None:
            self._on_created(created)
