"""The sweep without HTTP: pages are slices of a Python list that tests change between reads."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakturownia_sync.sweep import ListMoved, Sweep, advanced_cursor, overlapping_page, read_twice

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def record(record_id: int, minutes: int) -> dict[str, Any]:
    return {"id": record_id, "updated_at": (T0 + timedelta(minutes=minutes)).isoformat()}


class PagedList:
    """An offset-paged list; `between_reads(read_number, rows)` may change `rows` before a read is answered."""

    def __init__(self, rows: list[dict[str, Any]], between_reads: Callable[[int, list], None] | None = None) -> None:
        self.rows = rows
        self.between_reads = between_reads
        self.reads = 0

    def fetch(self, page: int, per_page: int) -> list[dict[str, Any]]:
        if self.between_reads is not None:
            self.between_reads(self.reads, self.rows)
        self.reads += 1
        start = (page - 1) * per_page
        return [dict(row) for row in self.rows[start : start + per_page]]


def newest_first(count: int) -> list[dict[str, Any]]:
    return [record(i, count - i) for i in range(1, count + 1)]


def ids_of(sweep: Sweep) -> list[int]:
    return [raw["id"] for raw in sweep.records()]


def test_overlapping_page_starts_at_or_before_the_frontier_and_reaches_past_it() -> None:
    for frontier in range(99, 5000, 7):
        page, size = overlapping_page(frontier)
        start = (page - 1) * size
        assert 50 <= size <= 100
        assert start <= frontier < start + size - 1


def test_a_still_list_is_read_once_with_every_record_once() -> None:
    rows = newest_first(1234)
    sweep = Sweep(PagedList(rows).fetch)
    assert ids_of(sweep) == [row["id"] for row in rows]
    assert sweep.complete and sweep.restarts == 0
    assert sweep.reads <= 1.15 * 1234 / 100 + 1


@pytest.mark.parametrize("deleted", [1, 5, 60, 150])
def test_deletions_before_the_frontier_lose_no_record(deleted: int) -> None:
    rows = newest_first(700)
    before = {row["id"] for row in rows}

    def tidy(read: int, current: list) -> None:
        if read == 1:  # after the first page was read, records on it are deleted
            del current[10 : 10 + deleted]

    sweep = Sweep(PagedList(rows, tidy).fetch)
    got = ids_of(sweep)
    remaining = {row["id"] for row in rows}
    assert remaining <= set(got) <= before
    assert len(got) == len(set(got))
    assert sweep.complete


def test_insertions_before_the_frontier_only_repeat_records_which_are_yielded_once() -> None:
    rows = newest_first(450)

    def grow(read: int, current: list) -> None:
        if read in (1, 3):
            for n in range(7):
                current.insert(0, record(10_000 + read * 10 + n, 10_000))

    sweep = Sweep(PagedList(rows, grow).fetch)
    got = ids_of(sweep)
    assert len(got) == len(set(got))
    assert set(range(1, 451)) <= set(got)
    assert sweep.restarts == 0


def test_deletions_and_insertions_between_every_read_lose_no_record_that_stayed() -> None:
    rng = random.Random(3)
    rows = newest_first(900)
    next_id = iter(range(50_000, 60_000))

    def churn(read: int, current: list) -> None:
        for _ in range(3):
            del current[rng.randrange(0, min(len(current), (read + 1) * 80))]
        current.insert(0, record(next(next_id), 50_000))

    original = {row["id"] for row in rows}
    sweep = Sweep(PagedList(rows, churn).fetch)
    got = ids_of(sweep)
    stayed = original & {row["id"] for row in rows}  # inserted during the run: the next run's (newer than its start)
    assert len(stayed) > 800 and stayed <= set(got)
    assert len(got) == len(set(got))


def test_a_list_that_keeps_moving_past_the_walk_back_fails_instead_of_reporting_success() -> None:
    rows = newest_first(2000)

    def purge(read: int, current: list) -> None:
        if read >= 1:
            del current[:250]  # more than two pages slide back before every read

    sweep = Sweep(PagedList(rows, purge).fetch, what="invoices")
    with pytest.raises(ListMoved, match="invoices"):
        list(sweep.records())
    assert not sweep.complete


def test_one_restart_reads_at_most_about_twice_one_sweep() -> None:
    rows = newest_first(1000)
    one_sweep = Sweep(PagedList(list(rows)).fetch)
    list(one_sweep.records())

    def purge_once(read: int, current: list) -> None:
        if read == 4:
            del current[:300]

    sweep = Sweep(PagedList(rows, purge_once).fetch)
    got = ids_of(sweep)
    assert {row["id"] for row in rows} <= set(got)
    assert sweep.restarts == 1 and sweep.complete
    assert sweep.reads <= 2 * one_sweep.reads


def test_the_sweep_stops_below_the_threshold_and_yields_nothing_older() -> None:
    rows = newest_first(1000)  # record i updated at minute 1000 - i
    threshold = T0 + timedelta(minutes=750)
    sweep = Sweep(PagedList(rows).fetch, threshold=threshold)
    got = ids_of(sweep)
    assert got == list(range(1, 251))
    assert sweep.reads == 3 and sweep.complete


def test_ties_at_a_page_boundary_at_the_threshold_are_all_read() -> None:
    # 100 newer records, then 30 records sharing one updated_at that straddle the first page boundary
    rows = [record(i, 500 - i) for i in range(1, 91)] + [record(i, 300) for i in range(91, 121)]
    rows += [record(i, 100) for i in range(121, 200)]
    threshold = T0 + timedelta(minutes=300)
    sweep = Sweep(PagedList(rows).fetch, threshold=threshold)
    got = ids_of(sweep)
    assert got == list(range(1, 121))
    assert sweep.complete


def test_a_server_that_ignores_the_order_is_read_to_the_end() -> None:
    rows = newest_first(600)
    random.Random(5).shuffle(rows)
    threshold = T0 + timedelta(minutes=400)
    sweep = Sweep(PagedList(rows).fetch, threshold=threshold)
    got = set(ids_of(sweep))
    assert got == set(range(1, 201))  # every record at or above the threshold, wherever it was
    assert not sweep.ordered
    assert sweep.records_read >= 600


def test_records_without_an_id_each_count_once() -> None:
    rows = [{"id": None, "number": str(n), "updated_at": T0.isoformat()} for n in range(3)]
    assert len(list(Sweep(PagedList(rows).fetch).records())) == 3


def test_the_cursor_moves_to_the_run_start_only_after_a_complete_run_and_never_back() -> None:
    started = T0 + timedelta(hours=2)
    assert advanced_cursor(None, started, complete=True) == started
    assert advanced_cursor(T0, started, complete=True) == started
    assert advanced_cursor(T0, started, complete=False) == T0
    assert advanced_cursor(None, started, complete=False) is None
    later = started + timedelta(minutes=5)
    assert advanced_cursor(later, started, complete=True) == later  # never moved back, never past a start


def test_reading_an_unordered_list_twice_finds_a_record_one_pass_missed() -> None:
    passes = iter([[{"id": 1}, {"id": 3}], [{"id": 1}, {"id": 2, "v": 2}, {"id": 3}]])
    assert sorted(read_twice(lambda: iter(next(passes)))) == [1, 2, 3]
