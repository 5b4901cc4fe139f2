"""One sweep over an offset-paged list that never loses a record when the list moves while it is read.

Why a sweep of its own
    Both syncs read Fakturownia lists the same way (invoices and clients newest-updated first down to
    `cursor - lookback`; backfill windows by id) and both move their cursor by the same rule, so the paging,
    the order check, the stop rule, the lost-record check and the cursor rule live here once, free of HTTP:
    a sweep is given a `fetch(page, per_page)` function and tested with pages as plain lists.

Why offset paging loses records, and how a lost record is found
    Page n is "the items at offsets (n-1)*per_page ..". When records before the read frontier are deleted
    (or leave the filter) between two page reads, the records just past the frontier slide into the part
    already read and no page ever returns them; the run would report success. So every page after the first
    is asked for with a `per_page` (50..100) and a page number chosen so that it starts at or before the
    last offset already read: the page overlaps what was read by at least one record. If the first record
    of the overlap is one already read, the list did not shift by more than the overlap, and every record
    that slid back over the frontier is inside the page: it is taken from there, at no extra request. If the
    first record is one never seen, more than the overlap slid back: the sweep reads back, page by page (at
    most two), until a page begins with a record already read, which closes the gap. If that fails it starts
    again from the first page (records already read are not yielded twice), at most `max_restarts` times
    (one by default, so a sweep costs at most about twice one sweep's reads); if the list moves once more,
    the sweep raises `ListMoved` and the caller keeps its cursor and does not record its window.
    The overlap costs a few percent more records per page after the first, and no extra request.
    A shift the other way (records inserted before the frontier, or an invoice edited to the top of an
    `updated_at.desc` list) only repeats records, which are dropped by id. Records created or edited during
    the run carry an `updated_at` after its start and are the next run's, which starts at the run's start.

The order and the stop rule
    A sweep with a threshold stops after the first page whose last record is older than the threshold, but
    only while every record came in the asked order (`updated_at` descending, ties in any order; records at
    exactly the threshold are still read). A server that ignores the order is read to the end.

The cursor rule (`advanced_cursor`)
    The cursor moves to the run's start, never past it, and only once the whole range was read and written;
    never after a failure. Not to the newest `updated_at` seen: that can lie hours back and makes every later
    run re-read those hours, and with ties at the newest second it would skip nothing but prove nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from typing import Any

from fakturownia_sync.errors import SyncError
from fakturownia_sync.records import parse_timestamp

PER_PAGE = 100
MIN_PER_PAGE = 50
MAX_WALK_BACK = 2

PageFetch = Callable[[int, int], list[dict[str, Any]]]
"""`fetch(page, per_page)`: the records at offsets `(page-1)*per_page .. page*per_page-1` of the list."""


class ListMoved(SyncError):
    """The list kept moving while it was read: the sweep could not prove it read every record of its range."""


def advanced_cursor(cursor: datetime | None, started: datetime, *, complete: bool) -> datetime | None:
    """The cursor after a run: the run's start once the whole range was read and written; otherwise unchanged."""
    if not complete:
        return cursor
    if cursor is not None and cursor >= started:
        return cursor
    return started


def overlapping_page(frontier: int, *, per_page: int = PER_PAGE, min_per_page: int = MIN_PER_PAGE) -> tuple[int, int]:
    """(page, per_page) of the page reaching furthest whose first offset is at or before `frontier`.

    `frontier` is the offset of the last record read; the page returned overlaps it by at least one record.
    """
    best: tuple[int, int, int] | None = None  # (end, size, page)
    for size in range(per_page, min_per_page - 1, -1):
        page_index = frontier // size
        end = page_index * size + size - 1
        if end <= frontier:
            continue
        if best is None or end > best[0]:
            best = (end, size, page_index + 1)
    if best is None:  # cannot happen for min_per_page >= 1; kept for a clear failure
        raise ValueError(f"no page overlaps offset {frontier}")
    return best[2], best[1]


class Sweep:
    """Read an offset-paged list once, completely, yielding each record once; see the module docstring.

    `order` names the field the server was asked to sort by, descending (`updated_at`), or None when the
    order does not matter to the stop rule (a backfill window read to its end). With a `threshold`, records
    older than it are not yielded and reading stops below it while the order holds.
    After the pages are exhausted, `complete` says the whole range was read.
    """

    def __init__(
        self,
        fetch: PageFetch,
        *,
        threshold: datetime | None = None,
        order: str | None = "updated_at",
        per_page: int = PER_PAGE,
        min_per_page: int = MIN_PER_PAGE,
        max_restarts: int = 1,
        what: str = "list",
    ) -> None:
        self.fetch = fetch
        self.threshold = threshold
        self.order = order
        self.per_page = per_page
        self.min_per_page = min(min_per_page, per_page)
        self.max_restarts = max_restarts
        self.what = what
        self.complete = False
        self.ordered = True
        self.reads = 0
        self.restarts = 0
        self.records_read = 0
        self.seen: set[Any] = set()

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """Yield, page by page, the records not yielded before (and not older than the threshold)."""
        while True:
            outcome = yield from self._pass()
            if outcome:
                self.complete = True
                return
            if self.restarts >= self.max_restarts:
                raise ListMoved(
                    f"{self.what}: the list kept changing while it was read ({self.restarts + 1} passes, "
                    f"{self.reads} page reads); records may have been skipped, so the cursor stays and the "
                    "range is read again by the next try"
                )
            self.restarts += 1

    def records(self) -> Iterator[dict[str, Any]]:
        for page in self.pages():
            yield from page

    # One pass ------------------------------------------------------------------------------------------

    def _read(self, page: int, size: int) -> list[dict[str, Any]]:
        items = self.fetch(page, size)
        self.reads += 1
        self.records_read += len(items)
        return items

    def _pass(self) -> Generator[list[dict[str, Any]], None, bool]:
        """One pass from the first page; returns True when read to its end, False when the list shifted too far."""
        previous: Any = None
        frontier: int | None = None  # offset of the last record read in this pass
        while True:
            if frontier is None:
                page, size, start = 1, self.per_page, 0
            else:
                page, size = overlapping_page(frontier, per_page=self.per_page, min_per_page=self.min_per_page)
                start = (page - 1) * size
            items = self._read(page, size)
            if frontier is not None and (not items or _key(items[0]) not in self.seen):
                # More records slid back over the frontier than the overlap holds: they lie just before `start`.
                closed = yield from self._walk_back(start)
                if not closed:
                    return False
            # Unseen records inside the overlap slid back over the frontier: `_accept` takes them with the rest.
            batch = self._accept(items)
            # The order is checked from the frontier's offset on: the overlap before it was checked last page.
            previous = self._check_order(items[0 if frontier is None else frontier - start :], previous)
            if batch:
                yield batch
            if len(items) < size:
                return True
            frontier = start + len(items) - 1
            if self._below_threshold(items[-1]):
                return True

    def _walk_back(self, start: int) -> Generator[list[dict[str, Any]], None, bool]:
        """Read the pages just before offset `start` until one begins with a record read before.

        Records before the frontier were deleted between two reads, so the ones after it moved back by more
        than the overlap. Under a stable order the records read form a prefix of the list; a page that starts
        inside that prefix and reaches `start` covers every record that moved back. Returns False after
        `MAX_WALK_BACK` pages without closing the gap (the pass is then read again from the top).
        """
        target = start - 1
        for _step in range(MAX_WALK_BACK):
            if target < 0:
                return True  # back at the top: everything before `start` has been read again
            page = target // self.per_page + 1
            items = self._read(page, self.per_page)
            closed = bool(items) and _key(items[0]) in self.seen
            batch = self._accept(items)
            if batch:
                yield batch
            if closed:
                return True
            target = (page - 1) * self.per_page - 1
        return False

    def _accept(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        batch = []
        for raw in items:
            key = _key(raw)
            if key in self.seen:
                continue  # a repeat: the list grew before the frontier, or the record was met in a pass before
            self.seen.add(key)
            if self.threshold is not None:
                updated = parse_timestamp(raw.get("updated_at"))
                if updated is not None and updated < self.threshold:
                    continue
            batch.append(raw)
        return batch

    def _check_order(self, items: list[dict[str, Any]], previous: Any) -> Any:
        if self.order is None:
            return previous
        for raw in items:
            value = parse_timestamp(raw.get(self.order))
            if value is None:
                continue
            if previous is not None and value > previous:
                self.ordered = False  # the server ignored the order: only a read to the end is safe
            previous = value
        return previous

    def _below_threshold(self, last: dict[str, Any]) -> bool:
        if self.threshold is None or self.order is None or not self.ordered:
            return False
        value = parse_timestamp(last.get(self.order))
        return value is not None and value < self.threshold


def _key(raw: dict[str, Any]) -> Any:
    """A record's identity in a sweep: its id, or its whole content when it has none (each such record counts)."""
    record_id = raw.get("id")
    if record_id is not None:
        return record_id
    return json.dumps(raw, sort_keys=True, default=str)


def read_twice(read_all: Callable[[], Iterator[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """A list whose order is unknown, read completely so that a record created or deleted meanwhile is not missed.

    Used for the CRM's clients: Sugester documents neither the order of its lists nor a "changed since", so
    a record can slide between pages unseen when another is deleted or created during the read, and the
    overlap check of `Sweep` would rest on an order nobody promised. The list is read twice and the passes
    are united by id (the second pass's copy wins): a record is missed only if both passes miss it, which
    takes two changes landing at the same page boundary during the read. The cost is a second pass over
    the list.
    """
    records: dict[int, dict[str, Any]] = {}
    for _pass in range(2):
        for raw in read_all():
            if raw.get("id") is not None:
                records[int(raw["id"])] = raw
    return records
