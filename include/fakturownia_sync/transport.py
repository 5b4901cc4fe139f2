"""HTTP discipline shared by both API clients: auth placement, timeouts, retries, typed errors, redaction.

Error handling is a table (status → what to do), in the spirit of Airbyte's default error mapping:

| answer                                   | idempotent request (GET/PUT/DELETE) | create (POST)              |
|------------------------------------------|-------------------------------------|----------------------------|
| connection refused / connect timeout     | retry                               | retry (nothing was sent)   |
| 429                                      | retry after `Retry-After`           | retry after `Retry-After`  |
| 5xx, read timeout, dropped connection    | retry                               | `AmbiguousWriteError`      |
| 2xx whose body says `"code"/"status": "error"` | GET: retry; PUT/DELETE: `ApiRejected` | `ApiRejected`   |
| 401 / 403                                | `ApiAuthError`                      | `ApiAuthError`             |
| 404                                      | `ApiNotFound`                       | `ApiNotFound`              |
| other 4xx                                | `ApiRejected` with the API's message | same                      |

A create is never retried after the request may have reached the server: the server might have applied it,
and a blind retry would make a duplicate. The caller looks the record up instead (see `AmbiguousWriteError`).
Retries are bounded; when they run out the request fails with `ApiUnavailable`.
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
    ApiNotFound,
    ApiRejected,
    ApiUnavailable,
)
from fakturownia_sync.rate_budget import RateBudget
from fakturownia_sync.redaction import install_redacting_filter, redact

log = logging.getLogger(__name__)
install_redacting_filter()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults ride out a few minutes of trouble and then give up."""

    max_attempts: int = 8
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    # A request gives up after this long in all, well inside the 15 minutes after which another run may
    # take over a claim: a create still being retried then can never race the take-over.
    max_total_seconds: float = 300.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


class _Retryable(Exception):
    """Internal: this attempt failed in a way that another attempt may fix."""

    def __init__(self, description: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after


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
    Counts every attempt in `calls` (for run summaries and benchmarks).
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
            session.mount("https://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32))
            session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32))
        self.session = session
        self.session.headers.update({"Accept": "application/json", "User-Agent": "fakturownia-crm-sync"})
        self._sleep = sleep
        self._lock = threading.Lock()
        self.calls = 0
        self.retries = 0

    @property
    def api(self) -> str:
        return self.account.api

    def _redact(self, text: str) -> str:
        return redact(text, (self.account.token,))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one logical request (with retries) and return the decoded JSON body (None for an empty one)."""
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

        def attempt() -> Any:
            self.budget.acquire()
            with self._lock:
                self.calls += 1
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    url,
                    params=query,
                    json=payload,
                    timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                )
            except requests.ConnectionError as exc:
                if idempotent or _nothing_was_sent(exc):
                    raise _Retryable(f"connection failed ({type(exc).__name__})") from None
                raise self._ambiguous(method, path, f"connection dropped ({type(exc).__name__})") from None
            except (requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if idempotent:
                    raise _Retryable(f"no complete answer ({type(exc).__name__})") from None
                raise self._ambiguous(method, path, f"no complete answer ({type(exc).__name__})") from None
            except requests.RequestException as exc:
                raise ApiError(self.api, self._redact(str(exc)), method=method, path=path) from None
            log.debug(
                "%s %s %s -> %s in %.0f ms",
                self.api,
                method,
                path,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            return self._interpret(response, method, path, idempotent)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_attempts)
            | tenacity.stop_after_delay(self.policy.max_total_seconds),
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
            raise ApiUnavailable(
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

    def _interpret(self, response: requests.Response, method: str, path: str, idempotent: bool) -> Any:
        status = response.status_code
        try:
            body = response.json() if response.content else None
            decoded = True
        except ValueError:
            body, decoded = response.text[:300], False
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
        if not decoded:
            if idempotent:
                raise _Retryable(f"answer {status} was not JSON", status)
            raise self._ambiguous(method, path, f"answer {status} was not JSON", status)
        if _is_error_body(body):
            # A read may hit a passing failure; a write answered "error" is a refusal of that record.
            if method == "GET":
                raise _Retryable(f"error in a {status} answer: {message}", status)
            raise ApiRejected(self.api, message, status=status, method=method, path=path, details=body)
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
