"""HTTP discipline shared by both API clients: auth placement, timeouts, retries, typed errors, redaction.

Error handling is a table (status → what to do), in the spirit of Airbyte's default error mapping:

| answer                                        | idempotent (GET/PUT/DELETE)     | create (POST)                  |
|-----------------------------------------------|---------------------------------|--------------------------------|
| connection refused / connect timeout          | retry                           | retry (nothing was sent)       |
| 429                                           | retry after `Retry-After` (1)   | retry after `Retry-After` (1)  |
| 5xx, read timeout, dropped connection         | retry                           | `AmbiguousWriteError`          |
| attempt past `attempt_deadline` (2)           | retry                           | `AmbiguousWriteError` if sent  |
| request past `max_total_seconds` (3)          | `ApiUnavailable`                | `ApiUnavailable`               |
| 3xx (never followed)                          | `ApiRedirected` (4)             | `ApiRedirected` (4)            |
| 2xx not JSON, or not the expected shape (5)   | retry, then `ApiMalformed`      | `AmbiguousWriteError`          |
| 2xx whose body says `"code"/"status": "error"`| GET: retry; else `ApiRejected`  | `ApiRejected`                  |
| 401 / 403                                     | `ApiAuthError`                  | `ApiAuthError`                 |
| 404                                           | `ApiNotFound`                   | `ApiNotFound`                  |
| other 4xx                                     | `ApiRejected` with API message  | same                           |

(1) Every thread of the process pauses, and the learnt rate drops (see `rate_budget`).
(2) Connect, send and every byte of the answer; the watchdog cuts the connection (see `http_deadline`).
(3) All attempts and the waits between them; no wait is started that would end past it.
(4) Following would send the token to the target. The message names `Location`, token redacted.
(5) `expect=LIST` (a JSON array of objects) or `expect=RECORD` (one object); never an `AttributeError` later.

A create is never retried after the request may have reached the server: the server might have applied it,
and a blind retry would make a duplicate. The caller looks the record up instead (see `AmbiguousWriteError`).
Retries are bounded in number and in time; when they run out the request fails with `ApiUnavailable` (or
`ApiMalformed` when the last answer was malformed). The deadlines and why they sit below the claim take-over
window are explained in `timing`. Error bodies are redacted before they are shortened, so that no part of a
token survives the cut.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import tenacity
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from fakturownia_sync.accounts import ApiAccount
from fakturownia_sync.errors import (
    AmbiguousWriteError,
    ApiAuthError,
    ApiError,
    ApiMalformed,
    ApiNotFound,
    ApiRedirected,
    ApiRejected,
    ApiUnavailable,
)
from fakturownia_sync.http_deadline import AttemptWatch, DeadlineAdapter
from fakturownia_sync.rate_budget import RateBudget
from fakturownia_sync.redaction import install_redacting_filter, redact
from fakturownia_sync.timing import ATTEMPT_DEADLINE_SECONDS, REQUEST_DEADLINE_SECONDS

log = logging.getLogger(__name__)
install_redacting_filter()

LIST = "list"
"""`expect=LIST`: the answer must be a JSON array of objects (a list page)."""
RECORD = "record"
"""`expect=RECORD`: the answer must be one JSON object."""
_ERROR_TEXT_LIMIT = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults ride out a few minutes of trouble and then give up."""

    max_attempts: int = 8
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    # All attempts and waits of one request, well inside the claim take-over window (see `timing`).
    max_total_seconds: float = REQUEST_DEADLINE_SECONDS
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # One attempt end to end (connect, send, every byte of the answer), however the bytes trickle in.
    attempt_deadline: float = ATTEMPT_DEADLINE_SECONDS


class _Retryable(Exception):
    """Internal: this attempt failed in a way that another attempt may fix."""

    def __init__(
        self,
        description: str,
        status: int | None = None,
        retry_after: float | None = None,
        final: type[ApiUnavailable] = ApiUnavailable,
    ):
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after
        self.final = final


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date; None if absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def api_message(body: Any) -> str:
    """The API's own error message, flattened: `{"message": {"name": ["- nie może być puste"]}}` → `name: …`."""
    message = body.get("message", body.get("error", body)) if isinstance(body, dict) else body
    if isinstance(message, dict):
        parts = []
        for key, value in message.items():
            text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(f"{key}: {text}")
        return ", ".join(parts)
    return str(message)


def _is_error_body(body: Any) -> bool:
    return isinstance(body, dict) and (body.get("code") == "error" or body.get("status") == "error")


def _shape_problem(body: Any, expect: str | None) -> str:
    """What is wrong with a decoded 2xx body for an endpoint that returns `expect`; "" when nothing is."""
    if expect == LIST:
        if not isinstance(body, list):
            return f"expected a list of records, got {type(body).__name__}"
        for index, item in enumerate(body):
            if not isinstance(item, dict):
                return f"expected a list of records, item {index} is {type(item).__name__}"
    elif expect == RECORD and not isinstance(body, dict):
        return f"expected a record, got {type(body).__name__}"
    return ""


def _nothing_was_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection failed before the request could reach the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


class ApiTransport:
    """Sends requests to one account with the API token placed as the vendor documents it.

    GET and DELETE carry `api_token` in the query string; POST/PUT/PATCH carry it in the JSON body.
    Counts logical `requests`, every attempt in `calls`, `retries` and `rate_limited` (429 answers), so run
    summaries and benchmarks can show the calls made next to the calls needed.
    """

    def __init__(
        self,
        account: ApiAccount,
        *,
        policy: RetryPolicy | None = None,
        budget: RateBudget | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account = account
        self.policy = policy or RetryPolicy()
        self.budget = budget or RateBudget(None)
        if session is None:
            session = requests.Session()
            # Room for the CRM writer threads: one pooled connection each, none opened and dropped per call.
            # The adapter cuts an attempt's connection at its deadline.
            session.mount("https://", DeadlineAdapter(pool_connections=4, pool_maxsize=32))
            session.mount("http://", DeadlineAdapter(pool_connections=4, pool_maxsize=32))
        self.session = session
        self.session.headers.update({"Accept": "application/json", "User-Agent": "fakturownia-crm-sync"})
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests = 0
        self.calls = 0
        self.retries = 0
        self.rate_limited = 0

    @property
    def api(self) -> str:
        return self.account.api

    def counters(self) -> dict[str, int]:
        """Logical requests (calls needed), attempts (calls made), retries and 429 answers."""
        with self._lock:
            return {
                "requests": self.requests,
                "calls": self.calls,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
            }

    def _redact(self, text: str) -> str:
        return redact(text, (self.account.token,))

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        expect: str | None = None,
    ) -> Any:
        """Send one logical request (with retries) and return the decoded JSON body (None for an empty one).

        `expect` (`LIST` or `RECORD`) is the shape the endpoint answers with; anything else is malformed.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method != "POST"
        url = self.account.base_url + path
        query = dict(params or {})
        payload: dict[str, Any] | None = None
        if method in ("GET", "DELETE"):
            query["api_token"] = self.account.token
        else:
            payload = {"api_token": self.account.token, **(body or {})}
        self._count("requests")
        deadline = time.monotonic() + self.policy.max_total_seconds

        def attempt() -> Any:
            if not self.budget.acquire(deadline - time.monotonic()):
                raise ApiUnavailable(
                    self.api, "no rate budget left before the request's deadline", method=method, path=path
                )
            self._count("calls")
            started = time.monotonic()
            sent_at = self.budget.stamp()
            watch = AttemptWatch(min(self.policy.attempt_deadline, deadline - started))
            try:
                with watch:
                    response = self.session.request(
                        method,
                        url,
                        params=query,
                        json=payload,
                        timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                        allow_redirects=False,
                    )
            except Exception as exc:
                if watch.expired:
                    what = f"no complete answer within {watch.seconds:.1f} s (deadline)"
                    if idempotent or (watch.watched and not watch.sent):
                        raise _Retryable(what) from None
                    raise self._ambiguous(method, path, what) from None
                if isinstance(exc, requests.ConnectionError):
                    if idempotent or _nothing_was_sent(exc):
                        raise _Retryable(f"connection failed ({type(exc).__name__})") from None
                    raise self._ambiguous(method, path, f"connection dropped ({type(exc).__name__})") from None
                if isinstance(exc, (requests.Timeout, requests.exceptions.ChunkedEncodingError)):
                    if idempotent:
                        raise _Retryable(f"no complete answer ({type(exc).__name__})") from None
                    raise self._ambiguous(method, path, f"no complete answer ({type(exc).__name__})") from None
                if isinstance(exc, requests.RequestException):
                    raise ApiError(self.api, self._redact(str(exc)), method=method, path=path) from None
                raise
            log.debug(
                "%s %s %s -> %s in %.0f ms",
                self.api,
                method,
                path,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            if response.status_code == 429:
                self._count("rate_limited")
                self.budget.rate_limited(sent_at, parse_retry_after(response.headers.get("Retry-After")))
            else:
                self.budget.answered(sent_at)
            return self._interpret(response, method, path, idempotent, expect)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_attempts)
            | tenacity.stop_before_delay(self.policy.max_total_seconds),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(state, method, path),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            attempts = retrying.statistics.get("attempt_number", self.policy.max_attempts)
            raise exc.final(
                self.api,
                f"gave up after {attempts} attempt(s); last: {exc.description}",
                status=exc.status,
                method=method,
                path=path,
            ) from None

    def _ambiguous(self, method: str, path: str, what: str, status: int | None = None) -> AmbiguousWriteError:
        return AmbiguousWriteError(
            self.api, f"{what}; the write may or may not have been applied", status=status, method=method, path=path
        )

    def _interpret(self, response: requests.Response, method: str, path: str, idempotent: bool, expect: str | None):
        status = response.status_code
        if 300 <= status < 400:
            location = self._redact(response.headers.get("Location") or "(no Location)")
            raise ApiRedirected(
                self.api,
                f"redirected to {location}; redirects are not followed",
                status=status,
                method=method,
                path=path,
            )
        try:
            body = response.json() if response.content else None
            decoded = True
        except ValueError:
            # Redact first, then cut: a cut token would no longer be recognised.
            body, decoded = self._redact(response.text)[:_ERROR_TEXT_LIMIT], False
        if status == 429:
            raise _Retryable("rate limited (429)", status, parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            if idempotent:
                raise _Retryable(f"server error {status}", status)
            raise self._ambiguous(method, path, f"server error {status}", status)
        message = self._redact(api_message(body)) if status >= 400 or _is_error_body(body) else ""
        if status in (401, 403):
            raise ApiAuthError(self.api, message, status=status, method=method, path=path)
        if status == 404:
            raise ApiNotFound(self.api, message, status=status, method=method, path=path)
        if status >= 400:
            raise ApiRejected(self.api, message, status=status, method=method, path=path, details=body)
        if _is_error_body(body):
            # A read may hit a passing failure; a write answered "error" is a refusal of that record.
            if method == "GET":
                raise _Retryable(f"error in a {status} answer: {message}", status)
            raise ApiRejected(self.api, message, status=status, method=method, path=path, details=body)
        problem = f"answer {status} was not JSON" if not decoded else _shape_problem(body, expect)
        if problem:
            if idempotent:
                raise _Retryable(problem, status, final=ApiMalformed)
            raise self._ambiguous(method, path, problem, status)
        return body

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.max_retry_after)
        backoff = tenacity.wait_exponential_jitter(multiplier=self.policy.backoff_initial, max=self.policy.backoff_max)
        return backoff(state)

    def _log_retry(self, state: tenacity.RetryCallState, method: str, path: str) -> None:
        with self._lock:
            self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s %s %s: %s; attempt %d of %d, next in %.1f s",
            self.api,
            method,
            path,
            getattr(exc, "description", exc),
            state.attempt_number,
            self.policy.max_attempts,
            wait,
        )
