"""The HTTP discipline, with HTTP faked at the transport (requests-mock) and sleeps recorded, not slept."""

from __future__ import annotations

import logging

import pytest
import requests

from fakturownia_sync.accounts import FAKTUROWNIA, SUGESTER, ApiAccount
from fakturownia_sync.error_table import parse_retry_after
from fakturownia_sync.errors import AmbiguousWriteError, ApiAuthError, ApiNotFound, ApiRejected, ApiUnavailable
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.rate_budget import RateBudget
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.sweep import Sweep
from fakturownia_sync.transport import ApiTransport, RetryPolicy

TOKEN = "s3cr3tT0ken/acme"
BASE = "https://acme.fakturownia.pl"


class FakeTime:
    """A clock that moves only when something sleeps on it; the sleeps are recorded, not slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sleeps(fake_time: FakeTime) -> list[float]:
    return fake_time.sleeps


@pytest.fixture
def transport(fake_time: FakeTime) -> ApiTransport:
    account = ApiAccount(FAKTUROWNIA, BASE, "acme", TOKEN)
    budget = RateBudget(None, clock=fake_time.clock, sleep=fake_time.sleep)
    return ApiTransport(account, policy=RetryPolicy(max_attempts=4), budget=budget, sleep=fake_time.sleep)


def assert_no_token(text: str) -> None:
    assert "s3cr3tT0ken" not in text
    assert "s3cr3tT0ken%2Facme" not in text


def test_get_sends_token_in_query_and_post_in_body(transport: ApiTransport, requests_mock) -> None:
    requests_mock.get(f"{BASE}/invoices.json", json=[])
    requests_mock.post(f"{BASE}/clients.json", status_code=201, json={"id": 5})
    transport.request("GET", "/invoices.json", params={"period": "all"})
    assert requests_mock.last_request.qs["api_token"] == [TOKEN.lower()]  # requests-mock lower-cases qs
    assert requests_mock.last_request.qs["period"] == ["all"]
    transport.request("POST", "/clients.json", body={"client": {"name": "X"}})
    assert requests_mock.last_request.json() == {"api_token": TOKEN, "client": {"name": "X"}}
    assert "api_token" not in requests_mock.last_request.qs
    assert requests_mock.last_request.timeout == (10.0, 60.0)


def test_429_waits_as_retry_after_says(transport: ApiTransport, requests_mock, sleeps: list[float]) -> None:
    requests_mock.get(
        f"{BASE}/invoices.json",
        [{"status_code": 429, "headers": {"Retry-After": "7"}, "json": {"code": "error"}}, {"json": [{"id": 1}]}],
    )
    assert transport.request("GET", "/invoices.json") == [{"id": 1}]
    assert sleeps == [7.0]
    assert transport.calls == 2 and transport.retries == 1


def test_5xx_on_get_is_retried_with_backoff(transport: ApiTransport, requests_mock, sleeps: list[float]) -> None:
    requests_mock.get(f"{BASE}/x.json", [{"status_code": 503, "text": "<html>"}, {"status_code": 500}, {"json": {}}])
    assert transport.request("GET", "/x.json") == {}
    assert len(sleeps) == 2 and all(0 < s <= 30 for s in sleeps)


def test_5xx_on_create_is_ambiguous_and_not_retried(transport: ApiTransport, requests_mock) -> None:
    requests_mock.post(f"{BASE}/clients.json", status_code=502)
    with pytest.raises(AmbiguousWriteError):
        transport.request("POST", "/clients.json", body={"client": {}})
    assert requests_mock.call_count == 1


def test_dropped_connection_on_create_is_ambiguous(transport: ApiTransport, requests_mock) -> None:
    requests_mock.post(f"{BASE}/clients.json", exc=requests.exceptions.ChunkedEncodingError("cut"))
    with pytest.raises(AmbiguousWriteError):
        transport.request("POST", "/clients.json", body={"client": {}})
    assert requests_mock.call_count == 1


def test_connect_timeout_on_create_is_retried(transport: ApiTransport, requests_mock) -> None:
    requests_mock.post(
        f"{BASE}/clients.json", [{"exc": requests.exceptions.ConnectTimeout}, {"status_code": 201, "json": {"id": 3}}]
    )
    assert transport.request("POST", "/clients.json", body={"client": {}}) == {"id": 3}


def test_retries_are_bounded_and_the_error_carries_no_token(transport: ApiTransport, requests_mock) -> None:
    leak = requests.exceptions.ConnectionError(f"Max retries exceeded with url: /invoices.json?api_token={TOKEN}")
    requests_mock.get(f"{BASE}/invoices.json", exc=leak)
    with pytest.raises(ApiUnavailable) as info:
        transport.request("GET", "/invoices.json")
    assert requests_mock.call_count == 4
    assert_no_token(str(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"code": "error", "message": "You must be logged in to gain access to the site"}, ApiAuthError),
        (403, {"code": "error", "message": "Forbidden"}, ApiAuthError),
        (404, {"code": "error", "message": "Not found"}, ApiNotFound),
        (422, {"code": "error", "message": {"buyer_name": ["- nie może być puste"]}}, ApiRejected),
    ],
)
def test_4xx_raise_typed_errors_with_the_api_message(transport: ApiTransport, requests_mock, status, body, error):
    requests_mock.get(f"{BASE}/invoices/1.json", status_code=status, json=body)
    with pytest.raises(error) as info:
        transport.request("GET", "/invoices/1.json")
    assert info.value.status == status
    assert requests_mock.call_count == 1
    assert_no_token(str(info.value))
    if status == 422:
        assert info.value.message == "buyer_name: - nie może być puste"


def test_error_body_in_200_is_an_error(transport: ApiTransport, requests_mock) -> None:
    body = {"message": "Faktura nie może zostać wysłana - brak numeru KSeF", "status": "error"}
    requests_mock.post(f"{BASE}/invoices/1/send_by_email.json", json=body)
    with pytest.raises(ApiRejected, match="brak numeru KSeF"):
        transport.request("POST", "/invoices/1/send_by_email.json")
    requests_mock.get(f"{BASE}/invoices.json", [{"json": {"code": "error", "message": "x"}}, {"json": []}])
    assert transport.request("GET", "/invoices.json") == []


def test_urls_logged_by_urllib3_are_redacted(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3.connectionpool").debug('%s "GET /a.json?api_token=%s HTTP/1.1" 200', BASE, TOKEN)
    assert "api_token=***" in caplog.text
    assert_no_token(caplog.text)


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0) == 10.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


def test_the_invoice_sweep_asks_for_every_invoice_newest_first_and_ends_on_a_short_page(requests_mock) -> None:
    client = FakturowniaClient.connect(ApiAccount(FAKTUROWNIA, BASE, "acme", TOKEN))
    listed = [{"id": i} for i in range(130)]

    def page(request, _context) -> list[dict[str, int]]:
        number, size = int(request.qs["page"][0]), int(request.qs["per_page"][0])
        return listed[(number - 1) * size : number * size]

    requests_mock.get(f"{BASE}/invoices.json", json=page)
    sweep = Sweep(client.invoice_pages_by_update(), what="invoices by update")
    assert [record["id"] for record in sweep.records()] == list(range(130))
    assert sweep.complete and sweep.reads == 2  # the second page overlaps the first and comes back short
    query = requests_mock.request_history[0].qs
    assert query["period"] == ["all"] and query["order"] == ["updated_at.desc"] and query["per_page"] == ["100"]


def test_sugester_lists_end_whether_or_not_the_server_honours_paging(requests_mock) -> None:
    base = "https://acme.sugester.pl"
    client = SugesterClient.connect(ApiAccount(SUGESTER, base, "acme", TOKEN))
    # A server that caps per_page at 25 and pages correctly:
    requests_mock.get(
        f"{base}/app/clients.json",
        [{"json": [{"id": i} for i in range(k, k + 25)]} for k in (0, 25)] + [{"json": []}],
    )
    assert len(list(client.iter_clients())) == 50
    # A server that ignores `page` and always answers the same list:
    requests_mock.get(f"{base}/app/deals.json", json=[{"id": 1}, {"id": 2}])
    assert [d["id"] for d in client.iter_deals()] == [1, 2]
