"""The client sync's writes sent `crm_write_concurrency` at a time, with the run's picture changed in order.

Each write to either API waits out the network's latency; sent one after another, a backfill's creates and
updates of thousands of clients are paced by that latency, not by the rate limit. So the client sync works in
three steps: it plans every write serially (what to send is decided from the run's picture of both client
bases), sends only the HTTP requests (and, for a create, its claim protocol) in a pool of threads, and then
applies the answers to that picture, the state DB links, the summary and the review list serially, in the
order the serial code used. The picture is never changed while the pool runs, so every job reads the same
picture, and the outcome is the serial code's whatever order the answers arrive in.

A create runs in the pool only when none of its evidence keys (the keys it is claimed on) is shared with
another create of the same step: two creates of one company must never run at once, and of one run they
would both pass the claim (a run may take over its own claims). The few that share a key are created one
after another in the apply step, each after the one before it was applied, exactly as before.

An unreachable API or a refused token stops the pool from starting further jobs; what already went out is
still applied (the records exist), and the error then fails the run.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fakturownia_sync.errors import ApiAuthError, ApiUnavailable

T = TypeVar("T")

FATAL = (ApiAuthError, ApiUnavailable)  # the run cannot go on: no further job is started


def run_all(jobs: Sequence[Callable[[], T]], concurrency: int, *, fatal: Callable[[T], bool]) -> list[T | None]:
    """Each job's result, in the jobs' order; None for a job not started because an earlier result was fatal.

    A job catches its own errors into its result (the apply step re-raises them in order)."""
    stop = threading.Event()

    def run(job: Callable[[], T]) -> T | None:
        if stop.is_set():
            return None
        result = job()
        if fatal(result):
            stop.set()
        return result

    if concurrency <= 1 or len(jobs) <= 1:
        return [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="client-writer") as pool:
        return list(pool.map(run, jobs))


def alone(keys_by_item: Sequence[Iterable[str]]) -> list[bool]:
    """For each item, whether none of its keys belongs to another item too (it may then run in the pool)."""
    keys = [set(item) for item in keys_by_item]
    counts = Counter(key for item in keys for key in item)
    return [all(counts[key] == 1 for key in item) for item in keys]


def settle_in_order(items: Iterable[T], settle: Callable[[T], None], ran: Callable[[T], bool]) -> None:
    """Apply each item; after a fatal error, only items whose requests already went out, then raise it."""
    failure: BaseException | None = None
    for item in items:
        if failure is not None and not ran(item):
            continue
        try:
            settle(item)
        except FATAL as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
