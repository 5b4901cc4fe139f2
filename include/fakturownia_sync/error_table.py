"""What each answer of an API, or a failure to get one, means: the one error table of both API clients.

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
(3) All attempts and the waits between them; no wait is started that would end past it (`transport`).
(4) Following would send the token to the target. The message names `Location`, token redacted.
(5) `expect=LIST` (a JSON array of objects) or `expect=RECORD` (one object); never an `AttributeError` later.

A create is never retried after the request may have reached the server: the server might have applied it,
and a blind retry would make a duplicate. The caller looks the record up instead (see `AmbiguousWriteError`).
"retry" here means `Retryable`: the transport tries again while its attempts and its time last, then raises the
row's final error (`ApiUnavailable`, or `ApiMalformed` when the last answer was malformed). Error bodies are
redacted before they are shortened, so that no part of a token survives the cut.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

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
from fakturownia_sync.http_deadline import AttemptWatch
from fakturownia_sync.redaction import redact

LIST = "list"
"""`expect=LIST`: the answer must be a JSON array of objects (a list page)."""
RECORD = "record"
"""`expect=RECORD`: the answer must be one JSON object."""
_ERROR_TEXT_LIMIT = 300


class Retryable(Exception):
    """This attempt failed in a way that another attempt may fix; `final` is raised when none is left."""

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


@dataclass(frozen=True)
class Call:
    """One logical request as the table reads it: which API, method and path (named by every error), whether
    it may be repeated (GET/PUT/DELETE) or is a create, the shape its answer must have, the token to redact."""

    api: str
    method: str
    path: str
    idempotent: bool
    expect: str | None
    token: str

    def redact(self, text: str) -> str:
        return redact(text, (self.token,))

    def ambiguous(self, what: str, status: int | None = None) -> AmbiguousWriteError:
        return AmbiguousWriteError(
            self.api,
            f"{what}; the write may or may not have been applied",
            status=status,
            method=self.method,
            path=self.path,
        )


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


def failed_attempt(call: Call, exc: Exception, watch: AttemptWatch) -> Exception:
    """What an attempt that got no answer stands for: `Retryable`, `AmbiguousWriteError` or `ApiError`; `exc`
    itself when it is no failure of the request (a bug, an interrupt)."""
    if watch.expired:
        what = f"no complete answer within {watch.seconds:.1f} s (deadline)"
        if call.idempotent or (watch.watched and not watch.sent):
            return Retryable(what)
        return call.ambiguous(what)
    if isinstance(exc, requests.ConnectionError):
        if call.idempotent or _nothing_was_sent(exc):
            return Retryable(f"connection failed ({type(exc).__name__})")
        return call.ambiguous(f"connection dropped ({type(exc).__name__})")
    if isinstance(exc, (requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        if call.idempotent:
            return Retryable(f"no complete answer ({type(exc).__name__})")
        return call.ambiguous(f"no complete answer ({type(exc).__name__})")
    if isinstance(exc, requests.RequestException):
        return ApiError(call.api, call.redact(str(exc)), method=call.method, path=call.path)
    return exc


def read_answer(call: Call, response: requests.Response) -> Any:
    """The decoded JSON body of an answer (None for an empty one), or the error the table gives it."""
    status, method, path = response.status_code, call.method, call.path
    if 300 <= status < 400:
        location = call.redact(response.headers.get("Location") or "(no Location)")
        raise ApiRedirected(
            call.api, f"redirected to {location}; redirects are not followed", status=status, method=method, path=path
        )
    try:
        body = response.json() if response.content else None
        decoded = True
    except ValueError:
        # Redact first, then cut: a cut token would no longer be recognised.
        body, decoded = call.redact(response.text)[:_ERROR_TEXT_LIMIT], False
    if status == 429:
        raise Retryable("rate limited (429)", status, parse_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        if call.idempotent:
            raise Retryable(f"server error {status}", status)
        raise call.ambiguous(f"server error {status}", status)
    message = call.redact(api_message(body)) if status >= 400 or _is_error_body(body) else ""
    if status in (401, 403):
        raise ApiAuthError(call.api, message, status=status, method=method, path=path)
    if status == 404:
        raise ApiNotFound(call.api, message, status=status, method=method, path=path)
    if status >= 400:
        raise ApiRejected(call.api, message, status=status, method=method, path=path, details=body)
    if _is_error_body(body):
        # A read may hit a passing failure; a write answered "error" is a refusal of that record.
        if method == "GET":
            raise Retryable(f"error in a {status} answer: {message}", status)
        raise ApiRejected(call.api, message, status=status, method=method, path=path, details=body)
    problem = f"answer {status} was not JSON" if not decoded else _shape_problem(body, call.expect)
    if problem:
        if call.idempotent:
            raise Retryable(problem, status, final=ApiMalformed)
        raise call.ambiguous(problem, status)
    return body


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
