"""HTTP discipline shared by both API clients: auth placement, attempts, retries, counting, redaction.

One logical request is sent in attempts. Each attempt waits for the rate budget (`rate_budget`), has a hard
deadline for connecting, sending and reading the whole answer (`http_deadline`), and is read by the error
table (`error_table`): an answer or a failure there is either the result, an error for the caller, or
`Retryable`. Retries wait with exponential jitter, or as long as `Retry-After` says, and are bounded in number
and in time: when they run out the request fails with `ApiUnavailable` (or `ApiMalformed` when the last answer
was malformed). A create (POST) is never retried once it may have reached the server. The deadlines and why
they sit below the claim take-over window are explained in `timing`. Request URLs are redacted before they are
logged, by this module's own logs and by urllib3's (`redaction`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from fakturownia_sync.accounts import ApiAccount
from fakturownia_sync.error_table import LIST, RECORD, Call, Retryable, failed_attempt, parse_retry_after, read_answer
from fakturownia_sync.errors import ApiUnavailable
from fakturownia_sync.http_deadline import AttemptWatch, DeadlineAdapter
from fakturownia_sync.rate_budget import RateBudget
from fakturownia_sync.redaction import install_redacting_filter
from fakturownia_sync.timing import ATTEMPT_DEADLINE_SECONDS, REQUEST_DEADLINE_SECONDS

__all__ = ["LIST", "RECORD", "ApiTransport", "RetryPolicy", "parse_retry_after"]

log = logging.getLogger(__name__)
install_redacting_filter()


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
        call = Call(self.api, method, path, idempotent, expect, self.account.token)
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
                failure = failed_attempt(call, exc, watch)
                if failure is exc:
                    raise
                raise failure from None
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
            return read_answer(call, response)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_attempts)
            | tenacity.stop_before_delay(self.policy.max_total_seconds),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(Retryable),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(state, method, path),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Retryable as exc:
            attempts = retrying.statistics.get("attempt_number", self.policy.max_attempts)
            raise exc.final(
                self.api,
                f"gave up after {attempts} attempt(s); last: {exc.description}",
                status=exc.status,
                method=method,
                path=path,
            ) from None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Retryable) and exc.retry_after is not None:
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
