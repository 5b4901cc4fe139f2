"""One backfill run at the cost of one sweep: client bases read once, windows only where invoices are, and a
dry run that is the real run with its writes answered locally.

Where the calls went
    Each window used to resolve its buyers alone: single client-card reads, then the whole client list,
    then the whole CRM client list, in every window; and every window of the range cost a task even where
    no invoice was issued. Now the run's client step (a full client sync, or one pass over each list when
    clients are not synced) leaves both bases in the state DB (the Fakturownia client mirror and the CRM
    client mirror), and each window builds its index from there: it reads a card alone only when the mirror
    lacks it, and writes every CRM client it creates to the mirror, so later windows see it (its claim is in
    the state DB too). Windows are planned only from the first to the last invoice of the range (two calls).

Why the dry run is exact
    It runs this same code, the client sync included, against a scratch copy of the state DB and with API
    clients whose writes are answered locally (`simulated_writes`), all windows in one process so they
    share what earlier windows "created". Nothing is written to the APIs or to the state DB.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from fakturownia_sync.backfill import (
    MAX_WINDOWS,
    BackfillRequest,
    issue_date_bounds,
    plan_invoice_windows,
    record_finished_window,
)
from fakturownia_sync.client_bases import MIRROR_FIELDS, trim
from fakturownia_sync.clients_sync import ClientsSync
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.invoices_to_deals import InvoicesToDeals
from fakturownia_sync.records import parse_timestamp
from fakturownia_sync.run_summary import add_api_calls
from fakturownia_sync.simulated_writes import simulated_clients, simulated_writes
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient

log = logging.getLogger(__name__)


class BackfillRun:
    """The steps of one backfill over one state DB and one pair of API clients."""

    def __init__(
        self,
        fakturownia: FakturowniaClient,
        crm: SugesterClient,
        store: StateStore,
        config: SyncConfig,
        request: BackfillRequest,
    ) -> None:
        self.fakturownia = fakturownia
        self.crm = crm
        self.store = store
        self.config = config
        self.request = request

    def sync_clients(self, owner: str) -> dict[str, Any]:
        """The `clients` entity: a full two-way client sync; its complete CRM read becomes the CRM mirror."""
        sync = ClientsSync(self.fakturownia, self.crm, self.store, self.config, owner=owner, full=True)
        summary = sync.run()
        self.store.save_crm_clients(sync.bases.crm.values(), replace_all=True)
        return summary

    def read_client_bases(self) -> None:
        """Without the client sync: one pass over each client list into the mirrors, for the windows."""
        records: dict[int, tuple[dict[str, Any], Any]] = {}
        for raw in self.fakturownia.iter_client_cards():
            if raw.get("id") is not None:
                records[int(raw["id"])] = (trim(raw, MIRROR_FIELDS), parse_timestamp(raw.get("updated_at")))
        self.store.save_fakturownia_clients(records.values(), replace_all=True)
        self.store.save_crm_clients(self.crm.iter_clients(), replace_all=True)

    def plan(self, max_windows: int = MAX_WINDOWS) -> tuple[list[dict[str, str]], int]:
        """Windows to do between the first and the last invoice of the range, and how many were done earlier."""
        if "invoices" not in self.request.entities:
            return [], 0
        issued = issue_date_bounds(self.fakturownia, self.request)
        return plan_invoice_windows(self.request, self.store, max_windows, issued=issued)

    def run_window(self, window: dict[str, str], owner: str, *, ledger: bool = True) -> dict[str, Any]:
        """One window, its buyers resolved against the mirrors; ledgered once complete (an incomplete one
        raises `WindowIncomplete` when `ledger` is set, so that its task is retried)."""
        store = self.store
        engine = InvoicesToDeals(
            self.fakturownia, self.crm, store, self.config, owner=owner, invoice_kinds=list(self.request.invoice_kinds)
        )
        engine.clients.use_client_bases(
            lambda: (store.crm_clients(), store.fakturownia_clients()),
            on_created=lambda created: store.save_crm_clients([created]),
        )
        summary = engine.run_window(date.fromisoformat(window["date_from"]), date.fromisoformat(window["date_to"]))
        if ledger:
            record_finished_window(self.request, store, window, summary)
        return summary


def dry_run(
    fakturownia: FakturowniaClient,
    crm: SugesterClient,
    store: StateStore,
    config: SyncConfig,
    request: BackfillRequest,
    *,
    owner: str,
    max_windows: int = MAX_WINDOWS,
    on_window: Callable[[dict[str, str], dict[str, Any]], None] = lambda _window, _summary: None,
) -> dict[str, Any]:
    """The whole backfill, written nowhere: {"clients": client-sync summary or None, "windows": [summary per
    window], "skipped": windows done earlier, "would_write": writes by endpoint}."""
    from fakturownia_sync.state.copy import copy_state  # the copy opens StateStore itself

    with tempfile.TemporaryDirectory(prefix="fakturownia-backfill-dry-") as folder:
        scratch_url = f"sqlite:///{Path(folder) / 'state.db'}"
        copy_state(store.url, scratch_url)
        scratch = StateStore.open(scratch_url)
        try:
            f_client, crm_client = simulated_clients(fakturownia, crm)
            run = BackfillRun(f_client, crm_client, scratch, config, request)
            clients = None
            if "clients" in request.entities:
                clients = run.sync_clients(owner)
            elif "invoices" in request.entities:
                run.read_client_bases()
            windows, skipped = run.plan(max_windows)
            summaries = []
            for window in windows:  # each summary counts its own window's calls (see `run_summary.api_calls`)
                summary = run.run_window(window, f"{owner}/{window['date_from']}", ledger=False)
                summaries.append(summary)
                on_window(window, summary)
            return {
                "clients": clients,
                "windows": summaries,
                "skipped": skipped,
                "would_write": simulated_writes(f_client, crm_client),
            }
        finally:
            scratch.close()


COUNTED = (
    "invoices_seen",
    "deals_created",
    "deals_updated",
    "deals_unchanged",
    "deals_for_anonymous_buyers",
    "skipped_cost",
    "skipped_cancelled",
)


def backfill_totals(clients: dict[str, Any] | None, windows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a backfill did, added up over its client step and its windows: the same keys for a dry run and
    for the real run, so the two can be compared count by count (but `api_calls`: a dry run sends no write)."""
    totals: dict[str, Any] = {"windows": len(windows), **dict.fromkeys(COUNTED, 0)}
    crm_created = (clients or {}).get("created_in_crm", 0)
    linked = (clients or {}).get("clients_linked", 0)
    quarantined: dict[str, int] = {}
    skipped_by_kind: dict[str, int] = {}
    for summary in windows:
        for key in COUNTED:
            totals[key] += summary.get(key, 0)
        crm_created += summary.get("clients_created", 0)
        linked += summary.get("clients_linked", 0)
        for reason, count in (summary.get("quarantined_by_reason") or {}).items():
            quarantined[reason] = quarantined.get(reason, 0) + count
        for kind, count in (summary.get("skipped_by_kind") or {}).items():
            skipped_by_kind[kind] = skipped_by_kind.get(kind, 0) + count
    totals["crm_clients_created"] = crm_created
    totals["fakturownia_clients_created"] = (clients or {}).get("created_in_fakturownia", 0)
    totals["clients_linked"] = linked
    totals["client_review"] = dict((clients or {}).get("review_by_reason") or {})
    totals["skipped_by_kind"] = dict(sorted(skipped_by_kind.items()))
    totals["quarantined_by_reason"] = dict(sorted(quarantined.items()))
    totals["api_calls"] = add_api_calls((clients or {}).get("api_calls"), *(s.get("api_calls") for s in windows))
    return totals
