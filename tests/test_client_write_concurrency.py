"""The client sync sends its writes `crm_write_concurrency` at a time and ends where the one-at-a-time sync ends.

Two sandboxes are started from one labelled client set (look-alikes, shared accountants' e-mails, invalid
NIPs, pairs to link), each answering every request after a delay, so that requests are really in flight at
once. One is synced with `crm_write_concurrency` 1, the other with 4, twice: a first run (links, creates both
ways, external ids stamped on first contact) and, after the same edits on both, a second (updates both ways, a
conflict). Both must end with the same clients on both sides, the same links, the same summary counts, the
same conflicts and the same review list. A record the sync creates gets its id from the sandbox in the order
the creates arrive, so created records are compared by the record they copy (their external id).
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fakturownia_sync.client_writes import FATAL, alone, run_all, settle_in_order
from fakturownia_sync.errors import ApiUnavailable
from fakturownia_sync.state import StateStore
from sandbox.labelled import generate
from sandbox.process import SandboxProcess
from tests.clients_harness import clients_of, make_clients_sync, put_client
from tests.sync_harness import demo_config

LATENCY_MS = 15
VOLATILE = {"id", "created_at", "updated_at", "token"}  # set by the sandbox as each create arrives
TIMING = {"duration_seconds", "api_calls", "cursor_before", "cursor_after"}


class Outcome:
    """A synced sandbox and its state DB, with every id put in a form both sandboxes share."""

    def __init__(self, sandbox: SandboxProcess, store: StateStore, seeded: dict[str, set[int]]) -> None:
        self.f_clients = clients_of(sandbox, "fakturownia")
        self.c_clients = clients_of(sandbox, "sugester")
        self.seeded = seeded
        self.store = store

    def f(self, f_id: int) -> tuple[str, Any]:
        if f_id in self.seeded["fakturownia"]:
            return ("fakturownia", f_id)
        return ("copy of crm", self.f_clients[f_id].get("external_id"))

    def c(self, c_id: int) -> tuple[str, Any]:
        if c_id in self.seeded["sugester"]:
            return ("crm", c_id)
        return ("copy of fakturownia", (self.c_clients[c_id].get("external_ids") or {}).get("fakturownia_client_id"))

    def records(self) -> tuple[dict, dict]:
        def fields(record: dict[str, Any]) -> dict[str, Any]:
            return {name: value for name, value in record.items() if name not in VOLATILE}

        return (
            {self.f(f_id): fields(record) for f_id, record in self.f_clients.items()},
            {self.c(c_id): fields(record) for c_id, record in self.c_clients.items()},
        )

    def links(self) -> set[tuple]:
        return {
            (self.f(link.fakturownia_client_id), self.c(link.crm_client_id), link.evidence, _frozen(link.snapshot))
            for link in self.store.all_client_links()
        }

    def review(self) -> list[tuple]:
        def subject(text: str) -> tuple[str, Any]:
            side, record_id = text.split(":")
            return self.f(int(record_id)) if side == "fakturownia" else self.c(int(record_id))

        return sorted(
            (subject(row["subject"]), row["reason"]) for row in self.store.open_client_review()
        )  # fmt: skip

    def conflicts(self) -> list[tuple]:
        rows = self.store.client_conflicts()
        return sorted(
            (self.f(r["fakturownia_client_id"]), self.c(r["crm_client_id"]), r["field"], r["winner"]) for r in rows
        )


def _frozen(snapshot: dict[str, Any] | None) -> tuple | None:
    return None if snapshot is None else tuple(sorted((name, repr(value)) for name, value in snapshot.items()))


def _edit(sandbox: SandboxProcess, store: StateStore) -> None:
    """The same edits on either sandbox: pairs linked by evidence exist in both under the same ids."""
    pairs = sorted(
        (link.fakturownia_client_id, link.crm_client_id)
        for link in store.all_client_links()
        if link.evidence in ("nip", "email")
    )[:9]
    assert len(pairs) == 9
    for n, (f_id, c_id) in enumerate(pairs):
        if n % 3 in (0, 2):
            put_client(sandbox, "fakturownia", f_id, {"city": f"Fakturownia city {n}"})
        if n % 3 in (1, 2):
            put_client(sandbox, "sugester", c_id, {"city": f"CRM city {n}"})


def _sync(seed: Path, store: StateStore, concurrency: int) -> tuple[list[dict[str, Any]], Outcome]:
    config = demo_config(crm_write_concurrency=concurrency)
    state_file = seed.with_name(f"sandbox-{concurrency}.json")  # a sandbox writes its state back to its file
    shutil.copyfile(seed, state_file)
    with SandboxProcess(state_file=state_file, latency_ms=LATENCY_MS) as sandbox:
        seeded = {api: set(clients_of(sandbox, api)) for api in ("fakturownia", "sugester")}
        first = make_clients_sync(sandbox, store, config, owner=f"tests/concurrency-{concurrency}").run()
        _edit(sandbox, store)
        second = make_clients_sync(sandbox, store, config, owner=f"tests/concurrency-{concurrency}").run()
        outcome = Outcome(sandbox, store, seeded)
    summaries = [{k: v for k, v in s.items() if k not in TIMING} for s in (first, second)]
    return summaries, outcome


def test_concurrent_client_writes_end_where_serial_ones_do(tmp_path: Path) -> None:
    state_file = generate(11, 500).write_state(tmp_path / "labelled.json")
    stores = [StateStore.open(f"sqlite:///{tmp_path / f'state-{n}.db'}") for n in (1, 4)]
    try:
        serial_summaries, serial = _sync(state_file, stores[0], 1)
        pooled_summaries, pooled = _sync(state_file, stores[1], 4)

        first, second = serial_summaries
        # the runs did what this test is about: creates both ways, updates both ways, a conflict, a review list
        assert first["created_in_crm"] > 0 and first["created_in_fakturownia"] > 0, first
        assert first["updated_in_crm"] > 0 and first["review_by_reason"], first
        assert second["updated_in_crm"] > 0 and second["updated_in_fakturownia"] > 0, second
        assert second["conflicts"] > 0, second
        assert first["status"] == second["status"] == "success"

        assert pooled_summaries == serial_summaries
        assert pooled.records() == serial.records()
        assert pooled.links() == serial.links()
        assert pooled.review() == serial.review()
        assert pooled.conflicts() == serial.conflicts()
        f_records, c_records = serial.records()
        assert len(f_records) == len(serial.f_clients) and len(c_records) == len(serial.c_clients)  # no id clash
    finally:
        for store in stores:
            store.close()


def test_unreachable_api_stops_new_writes_and_what_went_out_is_still_applied() -> None:
    started: list[int] = []

    def job(n: int) -> Exception | None:
        started.append(n)
        return ApiUnavailable("crm", "no answer") if n == 2 else None

    results = run_all([partial(job, n) for n in range(6)], 1, fatal=lambda result: isinstance(result, FATAL))
    assert started == [0, 1, 2] and results[3:] == [None, None, None]

    applied: list[int] = []

    def settle(item: tuple[int, Exception | None]) -> None:
        n, result = item
        if result is not None:
            raise result
        applied.append(n)

    items = [(0, None), (1, ApiUnavailable("crm", "no answer")), (2, None), (3, None)]
    with pytest.raises(ApiUnavailable):
        settle_in_order(items, settle, ran=lambda item: item[0] != 3)
    assert applied == [0, 2]  # 2's request went out before the failure was known; 3's never did


def test_records_sharing_an_evidence_key_are_kept_out_of_the_pool() -> None:
    keys = [["fakturownia:1", "nip:1"], ["fakturownia:2", "email:a"], ["fakturownia:3", "nip:3", "email:a"], []]
    assert alone(keys) == [True, False, False, True]
