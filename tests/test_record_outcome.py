"""The one rule both record streams (invoices → deals, deals → invoices) turn a record's error into an outcome by:
deferred, quarantined with a reason, or the run failed; and a record done resolves its open entry. Against a real
state DB (SQLite and PostgreSQL); the work handed in raises what the engine's own code raises."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from fakturownia_sync.errors import ApiAuthError, ApiRejected, ApiUnavailable, RecordDeferred, RecordError
from fakturownia_sync.record_outcome import RecordStream, handle_record
from fakturownia_sync.state import StateStore

TOKEN = "s3cr3t-token-value"


class Counts:
    def __init__(self) -> None:
        self.counters: Counter = Counter()
        self.reasons: Counter = Counter()

    def stream(self, store: StateStore, *, dry_run: bool = False) -> RecordStream:
        return RecordStream(
            kind="deal",
            stream="deals_to_invoices",
            store=store,
            count=lambda name: self.counters.update((name,)),
            count_reason=lambda reason: self.reasons.update((reason,)),
            secrets=(TOKEN,),
            fingerprint=lambda: "config-1",
            dry_run=dry_run,
        )


def raising(exc: BaseException) -> Callable[[], bool]:
    def work() -> bool:
        raise exc

    return work


def open_entries(store: StateStore) -> dict[str, tuple[str, str]]:
    return {e.record_id: (e.reason, e.message) for e in store.iter_open_quarantine("deals_to_invoices")}


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RecordError("no_client", "deal 7 names no client"), "no_client"),
        (ApiRejected("Fakturownia", "buyer_name: can't be blank", status=422), "fakturownia_rejected"),
        (KeyError(f"token {TOKEN}"), "unexpected_error"),
    ],
)
def test_a_record_error_quarantines_the_record_and_a_later_success_resolves_it(store, error, reason) -> None:
    counts = Counts()
    stream = counts.stream(store)
    handle_record(stream, {"id": 7, "title": "Wdrożenie"}, raising(error))
    [(record_id, (stored_reason, message))] = open_entries(store).items()
    assert (record_id, stored_reason, counts.reasons) == ("7", reason, Counter({reason: 1}))
    assert TOKEN not in message
    handle_record(stream, {"id": 7, "title": "Wdrożenie"}, lambda: False)  # not done yet: the entry stays
    assert open_entries(store) and counts.counters["quarantine_resolved"] == 0
    handle_record(stream, {"id": 7, "title": "Wdrożenie"}, lambda: True)
    assert open_entries(store) == {} and counts.counters["quarantine_resolved"] == 1


def test_a_deferred_record_is_counted_and_nothing_is_quarantined(store) -> None:
    counts = Counts()
    handle_record(counts.stream(store), {"id": 8}, raising(RecordDeferred("deal 8: another run creates")))
    assert counts.counters["deals_deferred"] == 1 and open_entries(store) == {}


@pytest.mark.parametrize("error", [ApiAuthError("CRM", "bad token", status=401), ApiUnavailable("CRM", "503")])
def test_an_api_that_refuses_the_token_or_cannot_be_reached_fails_the_run(store, error) -> None:
    counts = Counts()
    with pytest.raises(type(error)):
        handle_record(counts.stream(store), {"id": 9}, raising(error))
    assert open_entries(store) == {} and not counts.reasons


def test_records_without_an_id_get_an_entry_each(store) -> None:
    counts = Counts()
    for title in ("Pierwsza", "Druga"):
        handle_record(counts.stream(store), {"id": None, "title": title}, raising(RecordError("no_id", "x")))
    entries = open_entries(store)
    assert len(entries) == 2 and all(record_id.startswith("no-id-") for record_id in entries)


def test_a_dry_run_counts_and_writes_no_entry(store) -> None:
    counts = Counts()
    handle_record(counts.stream(store, dry_run=True), {"id": 10}, raising(RecordError("no_client", "x")))
    assert counts.reasons == Counter({"no_client": 1}) and open_entries(store) == {}
