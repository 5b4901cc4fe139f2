"""Helpers for tests that run the engine against the sandbox over real sockets.

Clients are built by the engine's factory (`fakturownia_sync.connections`), as the hooks build them; the
CRM inspection helpers (`crm_picture`, `deals_by_invoice`, `duplicates`) live in `sandbox.inspection`
and are re-exported here for the tests that import them from this module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fakturownia_sync.config import SyncConfig, load_config
from fakturownia_sync.connections import SyncEndpoints, connect_apis
from fakturownia_sync.errors import ApiUnavailable
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.invoices_to_deals import InvoicesToDeals, UnconfirmedWrites
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.timing import STALE_CLAIM_MINUTES
from fakturownia_sync.transport import RetryPolicy
from sandbox.demo_config import DEMO_CONFIG
from sandbox.inspection import crm_picture, deals_by_invoice, duplicates

__all__ = [
    "DEMO_CONFIG",
    "FAST_RETRIES",
    "ROOT",
    "clients_for",
    "crm_picture",
    "deals_by_invoice",
    "demo_config",
    "duplicates",
    "expected_candidates",
    "make_sync",
    "race_engines",
    "run_at_once",
    "run_like_airflow",
    "start_worker",
    "summary_of",
]

ROOT = Path(__file__).resolve().parents[1]

# Quick retries so fault tests finish fast; Retry-After from a 429 is still honoured.
FAST_RETRIES = RetryPolicy(max_attempts=12, backoff_initial=0.01, backoff_max=0.2, read_timeout=20.0)


def demo_config(**overrides: Any) -> SyncConfig:
    return load_config({**DEMO_CONFIG, **overrides})


def clients_for(sandbox: Any, policy: RetryPolicy = FAST_RETRIES) -> tuple[FakturowniaClient, SugesterClient]:
    """Both API clients for a running sandbox (or anything with its URL and token attributes)."""
    return connect_apis(SyncEndpoints.of(sandbox), policy=policy)


def make_sync(
    sandbox: Any,
    store: StateStore,
    config: SyncConfig | None = None,
    owner: str = "tests/run-1",
    clock: Callable[[], datetime] | None = None,
) -> InvoicesToDeals:
    fakturownia, crm = clients_for(sandbox)
    timing = {"clock": clock} if clock is not None else {}
    return InvoicesToDeals(fakturownia, crm, store, config or demo_config(), owner=owner, **timing)


def after_claim_window() -> datetime:
    """A clock for a run that starts once every claim of the runs before it may be taken over."""
    return datetime.now(UTC) + timedelta(minutes=STALE_CLAIM_MINUTES + 1)


def expected_candidates(sandbox: Any, config: SyncConfig) -> set[int]:
    """Invoices the sync must either turn into a deal or quarantine: sales, of a chosen kind, not cancelled."""
    return {
        invoice["id"]
        for invoice in sandbox.dump("fakturownia")["invoices"]
        if invoice.get("income") is not False
        and invoice.get("kind") in config.invoice_kinds
        and not invoice.get("cancelled")
    }


def run_like_airflow(
    sandbox: Any, store: StateStore, owner: str, tries: int = 6, clock: Callable[[], datetime] | None = None
) -> dict[str, Any]:
    """Run the sync until a run completes: again after the errors Airflow's task retries exist for, and again
    after an incomplete run (something deferred), as the next scheduled run would."""
    for _ in range(tries):
        try:
            summary = make_sync(sandbox, store, owner=owner, clock=clock).run()
        except (UnconfirmedWrites, ApiUnavailable):
            continue
        if summary["status"] != "incomplete":
            return summary
    raise AssertionError(f"the sync did not finish in {tries} tries")


def start_worker(
    sandbox: Any, state_url: str, owner: str, log: Path, window: tuple[str, str] | None = None
) -> subprocess.Popen:
    """One sync (a backfill window if given) in a process of its own (tests/engine_runner.py); stderr → `log`."""
    spec: dict[str, Any] = {**SyncEndpoints.of(sandbox, state_url).as_mapping(), "owner": owner}
    if window is not None:
        spec["window"] = list(window)
    command = [sys.executable, "-m", "tests.engine_runner", json.dumps(spec)]
    with log.open("ab") as stderr:
        return subprocess.Popen(command, cwd=ROOT, stderr=stderr)


def run_at_once(commands: list[list[str]], timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Run `python -m <module> <arguments>` for each command, all at once, each in a process of its own."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", *command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    ]
    finished = []
    for command, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=timeout)
        finished.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return finished


def race_engines(
    sandbox: Any, state_url: str, specs: list[dict[str, Any]], start_in: float = 3.0
) -> list[subprocess.CompletedProcess[str]]:
    """Syncs (tests/engine_runner.py, each spec naming at least its `owner`) in processes of their own, started
    at one moment once all have imported and connected."""
    common = {**SyncEndpoints.of(sandbox, state_url).as_mapping(), "start_at": time.time() + start_in}
    return run_at_once([["tests.engine_runner", json.dumps({**common, **spec})] for spec in specs])


def summary_of(finished: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The run summary an engine_runner process printed; fails with its stderr when it did not finish."""
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])
