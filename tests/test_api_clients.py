"""The API clients against answers that are slow, misdirected or broken.

HTTP is faked at the transport (requests-mock), except for the trickling answer, which needs a real socket: a
tiny threaded HTTP server on 127.0.0.1 sends its headers and then one byte every 0.3 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fakturownia_sync.accounts import FAKTUROWNIA, SUGESTER, ApiAccount
from fakturownia_sync.errors import AmbiguousWriteError, ApiMalformed, ApiRedirected, ApiRejected, ApiUnavailable
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.sweep import Sweep
from fakturownia_sync.timing import REQUEST_DEADLINE_SECONDS, STALE_CLAIM_MINUTES
from fakturownia_sync.transport import RetryPolicy

TOKEN = "s3cr3tT0ken/acme"
FK_BASE = "https://acme.fakturownia.pl"
CRM_BASE = "https://acme.sugester.pl"
FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.002)


def assert_no_token(text: str) -> None:
    assert "s3cr3t" not in text and "T0ken" not in text


def fakturownia(base: str = FK_BASE, policy: RetryPolicy = FAST) -> FakturowniaClient:
    return FakturowniaClient.connect(ApiAccount(FAKTUROWNIA, base, "acme", TOKEN), policy=policy)


def sugester(base: str = CRM_BASE, policy: RetryPolicy = FAST) -> SugesterClient:
    return SugesterClient.connect(ApiAccount(SUGESTER, base, "acme", TOKEN), policy=policy)


# -- deadlines ------------------------------------------------------------------------------------------


class TricklingHandler(BaseHTTPRequestHandler):
    """Promises 1,000 bytes of JSON and sends one every 0.3 s: no read ever waits long enough to time out."""

    def _trickle(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            return

    do_GET = _trickle
    do_POST = _trickle

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def trickling_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TricklingHandler)
    server.daemon_threads = True
    server.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


SHORT_DEADLINES = RetryPolicy(
    max_attempts=5, backoff_initial=0.01, backoff_max=0.05, read_timeout=5.0, attempt_deadline=1.5, max_total_seconds=4
)


def test_trickling_answer_to_a_read_ends_at_the_request_deadline(trickling_server: ThreadingHTTPServer) -> None:
    base = f"http://127.0.0.1:{trickling_server.server_port}"
    client = fakturownia(base, SHORT_DEADLINES)
    started = time.monotonic()
    with pytest.raises(ApiUnavailable) as info:
        client.get_invoice(7)
    elapsed = time.monotonic() - started
    assert elapsed < 6.0, f"took {elapsed:.1f} s"
    assert "deadline" in str(info.value) and "/invoices/7.json" in str(info.value)
    assert trickling_server.hits >= 2  # each attempt was cut at its own deadline and the read retried
    assert client.transport.calls == trickling_server.hits


def test_trickling_answer_to_a_create_is_ambiguous_and_never_resent(trickling_server: ThreadingHTTPServer) -> None:
    base = f"http://127.0.0.1:{trickling_server.server_port}"
    client = sugester(base, SHORT_DEADLINES)
    started = time.monotonic()
    with pytest.raises(AmbiguousWriteError):
        client.create_deal({"name": "FV 1/2026"})
    assert time.monotonic() - started < 3.0
    assert trickling_server.hits == 1


def test_request_deadline_is_inside_the_claim_take_over_window() -> None:
    assert RetryPolicy().max_total_seconds == REQUEST_DEADLINE_SECONDS
    assert RetryPolicy().attempt_deadline <= RetryPolicy().max_total_seconds < STALE_CLAIM_MINUTES * 60 / 2


# -- redirects ------------------------------------------------------------------------------------------


def test_redirect_on_a_deal_create_sends_nothing_to_the_target(requests_mock) -> None:
    target = "https://evil.example/app/deals.json"
    requests_mock.post(
        f"{CRM_BASE}/app/deals.json", status_code=307, headers={"Location": f"{target}?api_token={TOKEN}"}
    )
    stolen = requests_mock.post(target, status_code=201, json={"id": 999999})
    with pytest.raises(ApiRedirected) as info:
        sugester().create_deal({"name": "FV 1/2026"})
    assert not stolen.called
    assert len(requests_mock.request_history) == 1
    assert "evil.example" in str(info.value) and info.value.status == 307
    assert_no_token(str(info.value))
    assert_no_token(repr(info.value.args))


# -- malformed answers ----------------------------------------------------------------------------------


def test_html_page_in_a_200_list_answer_is_retried_then_malformed(requests_mock) -> None:
    requests_mock.get(f"{FK_BASE}/invoices.json", text="<html>proxy says hello</html>")
    with pytest.raises(ApiMalformed) as info:
        fakturownia().invoice_pages_by_update()(1, 100)
    assert requests_mock.call_count == FAST.max_attempts
    assert "Fakturownia" in str(info.value) and "/invoices.json" in str(info.value)


def test_passing_html_page_is_ridden_out(requests_mock) -> None:
    requests_mock.get(f"{FK_BASE}/invoices.json", [{"text": "<html>busy</html>"}, {"json": [{"id": 1}]}])
    assert fakturownia().invoice_pages_by_update()(1, 100) == [{"id": 1}]


@pytest.mark.parametrize("body", [{"id": 1}, "invoices", 3, None])
def test_list_page_that_is_not_a_list_is_malformed_not_attribute_error(requests_mock, body) -> None:
    requests_mock.get(f"{CRM_BASE}/app/deals.json", json=body)
    with pytest.raises(ApiMalformed, match=r"/app/deals\.json"):
        list(sugester().iter_deals())


def test_short_page_with_a_bad_record_is_not_the_end_of_the_list(requests_mock) -> None:
    full = [{"id": i} for i in range(100)]
    requests_mock.get(f"{FK_BASE}/invoices.json", [{"json": full}, {"json": [{"id": 100}, "junk", None]}])
    sweep = Sweep(fakturownia().invoice_pages_by_update())
    with pytest.raises(ApiMalformed, match="item 1 is str"):
        list(sweep.records())
    assert sweep.reads == 1  # the full first page was read; the bad one ends the sweep, not the list


def test_non_dict_record_in_a_crm_page_is_malformed(requests_mock) -> None:
    requests_mock.get(f"{CRM_BASE}/app/clients.json", json=[{"id": 1}, [2]])
    with pytest.raises(ApiMalformed, match=r"Sugester GET /app/clients\.json"):
        list(sugester().iter_clients())


def test_single_record_read_that_is_not_a_record_is_malformed(requests_mock) -> None:
    requests_mock.get(f"{FK_BASE}/invoices/5.json", json=[{"id": 5}])
    with pytest.raises(ApiMalformed, match=r"/invoices/5\.json"):
        fakturownia().get_invoice(5)


def test_create_answered_with_a_non_record_is_ambiguous_not_retried(requests_mock) -> None:
    requests_mock.post(f"{CRM_BASE}/app/deals.json", status_code=201, json=["ok"])
    with pytest.raises(AmbiguousWriteError):
        sugester().create_deal({"name": "FV 2/2026"})
    assert requests_mock.call_count == 1


# -- redaction ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 280, 295, 299])
def test_token_in_a_long_non_json_error_body_is_redacted_before_the_cut(requests_mock, position) -> None:
    text = "x" * position + f"api_token={TOKEN}" + "y" * 400
    requests_mock.get(f"{FK_BASE}/invoices/9.json", status_code=400, text=text)
    with pytest.raises(ApiRejected) as info:
        fakturownia().get_invoice(9)
    assert_no_token(str(info.value))
    assert_no_token(str(info.value.details))
    plain = "z" * position + TOKEN + "w" * 400  # a bare token, known only to the transport
    requests_mock.get(f"{FK_BASE}/invoices/10.json", status_code=422, text=plain)
    with pytest.raises(ApiRejected) as info:
        fakturownia().get_invoice(10)
    assert_no_token(str(info.value))
    assert_no_token(str(info.value.details))
