"""Every run summary counts, per API, the calls needed next to the calls made, its retries and its 429s.

Against the sandbox over real sockets, with 429s injected at random (`rate_limit_rate`, `Retry-After: 1`):
each engine's summary must say it made more calls than it needed, and name as many 429s and calls made
as the sandbox itself counted. A backfill's totals add its client step and its windows up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests

from fakturownia_sync.backfill import BackfillRequest
from fakturownia_sync.backfill_run import BackfillRun, backfill_totals
from fakturownia_sync.config import load_config
from fakturownia_sync.deals_to_invoices import DealsToInvoices
from fakturownia_sync.run_summary import add_api_calls, render_summary
from fakturownia_sync.state import StateStore
from sandbox.demo_config import DEMO_CONFIG
from sandbox.process import SandboxProcess
from sandbox.seed import INVOICING_STATUS, crm_deal_statuses
from tests.clients_harness import make_clients_sync
from tests.sync_harness import clients_for, demo_config, make_sync

SIZE = {"seed": 5, "clients": 30, "invoices": 80, "crm_clients": 12}
APIS = ("fakturownia", "sugester")
# Fakturownia gets few calls in these runs: a higher share of 429s, so that both APIs meet some.
RATE_LIMIT_SHARE = {"fakturownia": 0.2, "sugester": 0.08}


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(**SIZE) as running:
        yield running


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def inject_429s(sandbox: SandboxProcess) -> None:
    for api, share in RATE_LIMIT_SHARE.items():
        sandbox.set_faults(api, rate_limit_rate=share)
    sandbox.reset_stats()


def counted_by_sandbox(sandbox: SandboxProcess) -> dict[str, dict[str, int]]:
    stats = {api: sandbox.stats(api) for api in APIS}
    return {api: {"made": s["requests"], "rate_limited": s["faults"]["rate_limited"]} for api, s in stats.items()}


def assert_counts_match_the_sandbox(api_calls: dict[str, dict[str, int]], sandbox: SandboxProcess) -> None:
    assert set(api_calls) == set(APIS), api_calls
    server = counted_by_sandbox(sandbox)
    for api in APIS:
        counts = api_calls[api]
        assert counts["made"] == server[api]["made"], (api, counts, server[api])
        assert counts["rate_limited"] == server[api]["rate_limited"], (api, counts, server[api])
        # 429s were the only fault: every one was retried, and nothing else was
        assert counts["retries"] == counts["rate_limited"], (api, counts)
        assert counts["made"] == counts["needed"] + counts["retries"], (api, counts)
    assert sum(api_calls[api]["rate_limited"] for api in APIS) > 0, "no 429 was injected: nothing was tested"
    for api in APIS:
        if api_calls[api]["rate_limited"]:
            assert api_calls[api]["made"] > api_calls[api]["needed"], (api, api_calls[api])


def test_invoices_to_deals_summary_counts_calls_made_next_to_needed_and_the_sandboxs_429s(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    inject_429s(sandbox)
    summary = make_sync(sandbox, sqlite_store).run()
    assert summary["deals_created"] > 0
    assert_counts_match_the_sandbox(summary["api_calls"], sandbox)
    assert "api_retries" not in summary  # retries are one of the counts of `api_calls`, not a second place
    # The log's table: one line per API with its four counts.
    lines = [line for line in render_summary(summary).splitlines() if "needed" in line]
    assert len(lines) == 2, lines
    for api, line in zip(APIS, lines, strict=True):
        counts = summary["api_calls"][api]
        assert f"{api}: needed {counts['needed']}, made {counts['made']}," in line
        assert f"rate_limited {counts['rate_limited']}" in line


def test_client_sync_summary_counts_calls_made_next_to_needed_and_the_sandboxs_429s(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    inject_429s(sandbox)
    summary = make_clients_sync(sandbox, sqlite_store, full=True).run()
    assert summary["fakturownia_clients_read"] == SIZE["clients"]
    assert_counts_match_the_sandbox(summary["api_calls"], sandbox)


def test_deals_to_invoices_summary_counts_calls_made_next_to_needed_and_the_sandboxs_429s(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    status_id = next(s["id"] for s in crm_deal_statuses() if s["name"] == INVOICING_STATUS)
    crm_clients = [c for c in sandbox.dump("sugester")["clients"] if c.get("name") and c.get("email")]
    for number, client in enumerate(crm_clients[:6]):
        deal = {"name": f"Wdrożenie nr {number}", "price": "1230.00", "client_id": client["id"]}
        deal.update(status_id=status_id, responsible_id=1)
        answer = requests.post(
            f"{sandbox.sugester_url}/app/deals.json",
            json={"api_token": sandbox.sugester_token, "deal": deal},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    inject_429s(sandbox)
    fakturownia, crm = clients_for(sandbox)
    config = load_config(
        {**DEMO_CONFIG, "deal_invoicing": {"enabled": True, "statuses": [INVOICING_STATUS], "invoiced_status": None}}
    )
    summary = DealsToInvoices(fakturownia, crm, sqlite_store, config, owner="tests/summary-d2i").run()
    assert summary["invoices_created"] > 0
    assert_counts_match_the_sandbox(summary["api_calls"], sandbox)


def test_backfill_totals_add_up_the_client_step_and_every_window_each_counting_its_own_calls(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    issued = sorted(
        invoice["issue_date"]
        for invoice in sandbox.dump("fakturownia")["invoices"]
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(invoice.get("issue_date")))  # the seed has malformed ones too
    )
    config = demo_config()
    params = {"date_from": issued[0], "date_to": issued[-1], "window": "year"}
    request = BackfillRequest.from_params(params, config, date.fromisoformat(issued[-1]))
    fakturownia, crm = clients_for(sandbox)  # one pair for the whole backfill: its windows share them
    run = BackfillRun(fakturownia, crm, sqlite_store, config, request)
    inject_429s(sandbox)

    clients = run.sync_clients("tests/summary-backfill/clients")
    by_step: list[dict[str, Any]] = [counted_by_sandbox(sandbox)]
    assert_counts_match_the_sandbox(clients["api_calls"], sandbox)
    windows, _skipped = run.plan()  # its two calls belong to no run's summary
    assert len(windows) >= 2
    summaries = []
    for window in windows:
        sandbox.reset_stats()
        summaries.append(run.run_window(window, f"tests/summary-backfill/{window['date_from']}"))
        by_step.append(counted_by_sandbox(sandbox))
        for api in APIS:  # each window's own calls, not the running count of the clients it shares
            assert summaries[-1]["api_calls"][api]["made"] == by_step[-1][api]["made"]

    totals = backfill_totals(clients, summaries)
    server = add_api_calls(*by_step)
    for api in APIS:
        assert totals["api_calls"][api]["made"] == server[api]["made"] > 0, (api, totals["api_calls"], server)
        assert totals["api_calls"][api]["rate_limited"] == server[api]["rate_limited"], (api, server)
    assert totals["api_calls"] == add_api_calls(clients["api_calls"], *(s["api_calls"] for s in summaries))
    assert sum(totals["api_calls"][api]["rate_limited"] for api in APIS) > 0
