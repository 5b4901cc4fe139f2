"""Webhooks of the Fakturownia sandbox: after an invoice or client is stored, POST it to the webhook receivers.

Delivered the way Fakturownia delivers (reference/fakturownia-api.md §7, §16): one JSON POST per event and
receiver, fired only after the create or update succeeded, carrying the webhook's own token as `api_token`,
the event `kind`, the record `id` and the record itself (an invoice under the key `deal`, as one public receiver
reads it; a client under `client`). Deliveries run on one background thread, so the API answer never waits for
a receiver, and are never retried: a lost webhook is what the sync's scheduled sweep is for, and the
`drop_rate` knob loses some on purpose to show it.

Receivers are the active webhooks registered through the API (`POST /webhooks.json`, the store's
`active_webhooks`) plus the one given on the command line (`--webhook-url`, `--webhook-token`, `--webhook-kinds`).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import requests
from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.conventions import json_response
from sandbox.store import WEBHOOK_KINDS

log = logging.getLogger("sandbox.webhooks")

DEFAULT_WEBHOOK_TOKEN = "fk-sandbox-webhook-token"
SYNCED_KINDS = ("invoice:create", "invoice:update", "client:create", "client:update")
RECORD_KEYS = {"invoice": "deal", "client": "client", "product": "product"}
DELIVERY_TIMEOUT_SECONDS = 10.0


def parse_kinds(text: str | Iterable[str]) -> frozenset[str]:
    """`invoice:create,client:update` (or a list) as a set of documented kinds; ValueError names a bad one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = frozenset(item.strip() for item in items if item.strip())
    unknown = sorted(kinds - WEBHOOK_KINDS)
    if unknown:
        raise ValueError(f"unknown webhook kind(s) {', '.join(unknown)}; known: {', '.join(sorted(WEBHOOK_KINDS))}")
    return kinds


@dataclass(frozen=True)
class WebhookTarget:
    """Where the command line sends webhooks; `url` None sends none."""

    url: str | None = None
    token: str = DEFAULT_WEBHOOK_TOKEN
    kinds: frozenset[str] = frozenset(SYNCED_KINDS)
    drop_rate: float = 0.0


def webhook_body(kind: str, record: Mapping[str, Any], token: str) -> dict[str, Any]:
    """The delivered body: the webhook's token, the event, the record id and the record."""
    return {"api_token": token, "kind": kind, "id": record["id"], RECORD_KEYS[kind.split(":", 1)[0]]: record}


class WebhookDelivery:
    """A queue and one thread that POSTs queued webhooks; counts what happened to each."""

    def __init__(
        self,
        target: WebhookTarget,
        seed: int = 0,
        registered: Callable[[str], Iterable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.target = target
        self.registered = registered or (lambda kind: ())
        self._random = random.Random(f"webhooks-{seed}")
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._counts = {"queued": 0, "delivered": 0, "dropped": 0, "failed": 0}
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def receivers(self, kind: str) -> list[tuple[str, str]]:
        """(url, token) of every active receiver of `kind`: registered webhooks, then the command-line one."""
        found = [(str(hook["url"]), str(hook.get("api_token") or "")) for hook in self.registered(kind)]
        if self.target.url and kind in self.target.kinds:
            found.append((self.target.url, self.target.token))
        return found

    def emit(self, kind: str, record: Mapping[str, Any]) -> int:
        """Queue `kind` for `record` (already stored) to every receiver; returns how many were queued. The body
        is serialised now, so later changes to the record do not leak into this delivery."""
        queued = 0
        for url, token in self.receivers(kind):
            with self._lock:
                if self._random.random() < self.target.drop_rate:
                    self._counts["dropped"] += 1
                    continue
                self._counts["queued"] += 1
            self._queue.put((url, json.dumps(webhook_body(kind, record, token), ensure_ascii=False).encode()))
            queued += 1
        return queued

    def _run(self) -> None:
        session = requests.Session()
        while (item := self._queue.get()) is not None:
            url, body = item
            try:
                answer = session.post(
                    url, data=body, headers={"Content-Type": "application/json"}, timeout=DELIVERY_TIMEOUT_SECONDS
                )
                outcome = "delivered" if answer.status_code < 300 else "failed"
                if outcome == "failed":
                    log.warning("webhook to %s answered HTTP %s", url, answer.status_code)
            except requests.RequestException as exc:
                outcome = "failed"
                log.warning("webhook to %s failed: %s", url, type(exc).__name__)
            with self._lock:
                self._counts[outcome] += 1
        session.close()

    def configure(self, changes: Mapping[str, Any]) -> WebhookTarget:
        """Change the command-line receiver and the drop knob at run time (`url`, `token`, `kinds`, `drop_rate`)."""
        unknown = sorted(set(changes) - {"url", "token", "kinds", "drop_rate"})
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
        target = self.target
        if "url" in changes:
            target = replace(target, url=str(changes["url"]) if changes["url"] else None)
        if "token" in changes:
            target = replace(target, token=str(changes["token"]))
        if "kinds" in changes:
            target = replace(target, kinds=parse_kinds(changes["kinds"]))
        if "drop_rate" in changes:
            rate = changes["drop_rate"]
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError("drop_rate must be a number between 0 and 1")
            target = replace(target, drop_rate=float(rate))
        self.target = target
        return target

    def snapshot(self) -> dict[str, Any]:
        """Counters and settings, without any token."""
        with self._lock:
            counts = dict(self._counts)
        return {
            **counts,
            "pending": counts["queued"] - counts["delivered"] - counts["failed"],  # waiting or being sent
            "url": self.target.url,
            "kinds": sorted(self.target.kinds),
            "drop_rate": self.target.drop_rate,
        }

    def close(self) -> None:
        self._queue.put(None)


def control_router(delivery: WebhookDelivery) -> APIRouter:
    """`GET /_sandbox/webhooks`: counters; `POST` with any of url/token/kinds/drop_rate: change them."""
    router = APIRouter(prefix="/_sandbox")

    @router.get("/webhooks")
    async def read_webhooks() -> Response:
        return json_response(delivery.snapshot())

    @router.post("/webhooks")
    async def set_webhooks(request: Request) -> Response:
        try:
            changes = await request.json()
        except ValueError:
            return json_response({"ok": False, "error": "body must be JSON"}, 400)
        if not isinstance(changes, dict):
            return json_response({"ok": False, "error": "body must be a JSON object"}, 400)
        try:
            delivery.configure(changes)
        except ValueError as exc:
            return json_response({"ok": False, "error": str(exc)}, 422)
        return json_response(delivery.snapshot())

    return router
