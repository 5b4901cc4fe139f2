"""A deal create that the CRM holds open past our deadline lands later: it must not be sent a second time.

A slow CRM (or a proxy in front of it) may apply a create long after our attempt gave up waiting for it. A
look-up made in between finds nothing, so re-sending at that moment would make a second deal. The rule under
test (`deal_writer`): a create whose attempt may still land is looked up, never re-sent, until its claim is
older than the take-over window; a run after that looks it up again and creates only what is still missing.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace

import pytest
import requests

from fakturownia_sync.claims import CRM_DEAL
from fakturownia_sync.invoices_to_deals import InvoicesToDeals, UnconfirmedWrites
from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.sync_harness import FAST_RETRIES, after_claim_window, clients_for, deals_by_invoice, demo_config, duplicates

SIZE = {"seed": 5, "clients": 30, "invoices": 60, "crm_clients": 10}
HOLD_SECONDS = 3.0
POLICY = replace(FAST_RETRIES, attempt_deadline=1.0, max_total_seconds=20.0)


class HoldingProxy:
    """Forwards every request to `upstream`, but holds the first `holds` deal creates for `HOLD_SECONDS` first."""

    def __init__(self, upstream: str, holds: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.holds_left = holds
        self.held: list[threading.Thread] = []
        self.deal_posts = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                creates_deal = self.command == "POST" and self.path.startswith("/app/deals.json")
                if creates_deal:
                    proxy.count_post()
                if creates_deal and proxy.take_hold():
                    proxy.held.append(threading.current_thread())
                    time.sleep(HOLD_SECONDS)  # the client gives up meanwhile; the create still lands below
                answer = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                    timeout=30,
                )
                try:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except OSError:
                    pass  # the client is gone: that is the point

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count_post(self) -> None:
        with self._lock:
            self.deal_posts += 1

    def take_hold(self) -> bool:
        with self._lock:
            if self.holds_left <= 0:
                return False
            self.holds_left -= 1
            return True

    def wait_for_held(self) -> None:
        for thread in list(self.held):
            thread.join(timeout=30)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(**SIZE) as running:
        yield running


def test_a_create_held_past_the_deadline_is_not_sent_twice(sandbox: SandboxProcess, tmp_path) -> None:
    proxy = HoldingProxy(sandbox.sugester_url, holds=2)
    through_proxy = SimpleNamespace(
        fakturownia_url=sandbox.fakturownia_url,
        fakturownia_token=sandbox.fakturownia_token,
        sugester_url=proxy.url,
        sugester_token=sandbox.sugester_token,
    )
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    config = demo_config(crm_write_concurrency=1)

    def sync(**timing) -> InvoicesToDeals:
        fakturownia, crm = clients_for(through_proxy, policy=POLICY)
        return InvoicesToDeals(fakturownia, crm, store, config, owner="tests/held", **timing)

    try:
        with pytest.raises(UnconfirmedWrites):
            sync().run()  # two creates cut at the deadline, not found yet, so not sent again
        proxy.wait_for_held()  # ... and now they land
        assert duplicates(deals_by_invoice(sandbox)) == {}

        second = sync().run()  # the retry finds them: nothing is created twice
        assert second["status"] == "success" and second["deals_recovered"] >= 1
        assert store.unconfirmed_creates(CRM_DEAL) == []

        later = sync(clock=after_claim_window).run()
        assert later["deals_created"] == 0
        grouped = deals_by_invoice(sandbox)
        assert duplicates(grouped) == {}
        assert proxy.deal_posts == sum(len(deals) for deals in grouped.values())  # every create sent once
    finally:
        proxy.close()
        store.close()
