"""Fault injection in front of a vendor API: latency, rate limits, errors, drops.

Applied per request in a fixed order, latency → rate limit → error →
error-in-200 → handler → drop, so each knob has a precise meaning for the
retry logic under test:

* a 429 (from the ``rpm`` bucket, or at random at ``rate_limit_rate``) or a 5xx is answered before the
  handler runs, so nothing was written;
* an error in an HTTP 200 body also skips the handler;
* a drop happens *after* the handler ran, so the write landed although the
  client saw a broken connection: exactly the case idempotent retries exist for.

Control endpoints under ``/_sandbox/`` are never delayed, limited or counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.conventions import WRITE_METHODS, Vendor, json_response
from sandbox.stats import Stats, endpoint_label

CONTROL_PREFIX = "/_sandbox"
DROP_LOG_MESSAGE = "ASGI callable returned without completing response."

_GATEWAY_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} {reason}</title></head>"
    "<body><h1>{status} {reason}</h1><p>nginx</p></body></html>"
)


@dataclass
class FaultKnobs:
    """The run-time adjustable fault settings of one vendor API."""

    latency_ms: float = 0.0
    rpm: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    error_body_rate: float = 0.0
    rate_limit_rate: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, changes: dict[str, Any]) -> FaultKnobs:
        """A copy with ``changes`` applied; ValueError names the first bad knob."""
        known = {f.name for f in fields(self)}
        values = self.as_dict()
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown knob {name!r}; known: {sorted(known)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number")
            if value < 0 or (name.endswith("_rate") and value > 1):
                raise ValueError(f"{name} out of range")
            values[name] = value
        return FaultKnobs(**values)


class TokenBucket:
    """``rpm`` requests per minute with a burst of one second's worth (at least 1)."""

    def __init__(self, rpm: float) -> None:
        self.rate = rpm / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> int | None:
        """Consume a token; when none is left, the whole seconds until one is."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self.tokens) / self.rate))


class FaultInjector:
    """Knobs, the rate-limit bucket and the seeded dice of one vendor API."""

    def __init__(self, knobs: FaultKnobs, seed: int, vendor_name: str) -> None:
        self.rng = random.Random(f"{seed}:{vendor_name}:faults")
        self.knobs = knobs
        self.bucket: TokenBucket | None = None
        self.lost_replies: dict[str, int] = {}  # path → creates whose answer is still to be lost
        self.configure({})

    def configure(self, changes: dict[str, Any]) -> FaultKnobs:
        self.knobs = self.knobs.updated(changes)
        self.bucket = TokenBucket(self.knobs.rpm) if self.knobs.rpm > 0 else None
        return self.knobs

    def lose_replies(self, path: str, count: int) -> int:
        """Lose the answers to the next `count` creates at `path` (the create is applied, the line cut)."""
        self.lost_replies[path] = max(0, int(count))
        return self.lost_replies[path]

    def lose_reply_to(self, path: str) -> bool:
        """Whether this create's answer is to be lost (one of the `lose_replies` still to come)."""
        if self.lost_replies.get(path, 0) <= 0:
            return False
        self.lost_replies[path] -= 1
        return True

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        return rate >= 1 or self.rng.random() < rate


class SilenceDroppedResponses(logging.Filter):
    """Hide uvicorn's complaint about the responses we cut off on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != DROP_LOG_MESSAGE


class FaultMiddleware:
    """ASGI wrapper that applies the faults and counts every vendor API request."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, stats: Stats, vendor: Vendor) -> None:
        self.app = app
        self.injector = injector
        self.stats = stats
        self.vendor = vendor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        endpoint = endpoint_label(method, path)
        stats, injector = self.stats, self.injector
        knobs = injector.knobs
        stats.request(endpoint)

        if knobs.latency_ms > 0:
            stats.fault("latency")
            await asyncio.sleep(knobs.latency_ms / 1000)

        if injector.bucket is not None:
            wait = injector.bucket.take()
            if wait is not None:
                stats.fault("rate_limited")
                body = self.vendor.error_body("Rate limit exceeded")
                await self._answer(json_response(body, 429, {"Retry-After": str(wait)}), scope, receive, send)
                return

        if injector.roll(knobs.rate_limit_rate):
            stats.fault("rate_limited")
            body = self.vendor.error_body("Rate limit exceeded")
            await self._answer(json_response(body, 429, {"Retry-After": "1"}), scope, receive, send)
            return

        if injector.roll(knobs.error_rate):
            stats.fault("error")
            status = injector.rng.choice((500, 502, 503))
            await self._answer(_server_error(status, self.vendor), scope, receive, send)
            return

        if injector.roll(knobs.error_body_rate):
            stats.fault("error_body")
            body = self.vendor.error_body(self.vendor.internal_error_body)
            await self._answer(json_response(body, 200), scope, receive, send)
            return

        if injector.roll(knobs.drop_rate) or (method == "POST" and injector.lose_reply_to(path)):
            stats.fault("drop")
            status = await self._run_and_drop(scope, receive, send)
        else:
            status = await self._run(scope, receive, send)
        stats.status(status)
        if method in WRITE_METHODS and 200 <= status < 300:
            stats.write(endpoint)

    async def _answer(self, response: Response, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats.status(response.status_code)
        await response(scope, receive, send)

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> int:
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, counting_send)
        return status

    async def _run_and_drop(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Run the handler fully, then send a truncated response and let the server cut the line.

        The response start promises more bytes than are ever sent; returning
        with the response incomplete makes uvicorn close the transport, so the
        client sees a broken connection after the write already happened.
        """
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffering_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, buffering_send)
        if start is None:
            return 500
        body = b"".join(chunks)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body) + 1024).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        return int(start["status"])


def _server_error(status: int, vendor: Vendor) -> Response:
    if status == 500:
        return json_response(vendor.error_body("Internal Server Error"), 500)
    reason = "Bad Gateway" if status == 502 else "Service Temporarily Unavailable"
    return HTMLResponse(_GATEWAY_PAGE.format(status=status, reason=reason), status_code=status)
