"""Receiver of Fakturownia webhooks, served by the plugin's FastAPI app at `/fakturownia-sync/webhooks/fakturownia`.

A webhook is only a nudge: it says "invoice 123 changed" so the sync runs now instead of at the next 15-minute
tick. Nothing else from the body is used: the record is re-read from the Fakturownia API by the sync, so a forged
or stale body can at worst start a sweep early, never write data.

Not behind the Airflow login: Fakturownia cannot log in. A webhook authenticates by its own token, which
Fakturownia puts in the JSON body under `api_token` (reference/fakturownia-api.md §7, §16), compared in constant
time with the password of the connection `fakturownia_webhook`. The token is taken from the body only: a token
in the query string would land in the api-server's access log, and Fakturownia sends no header for it.

The event kind (`invoice:create`, ...) is read from the body's `kind`; because the delivered body is not
documented, a `kind` query parameter set on the registered URL (`...?kind=invoice:create`) is read when the
body names none. The record id is the body's `id`, else the `id` of the record object (one public receiver reads
the invoice under the key `deal`).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import AssetAlias
from airflow.sdk.exceptions import AirflowNotFoundException
from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fakturownia_sync.ids import as_id
from fakturownia_sync.integration_findings import WEBHOOK_CONNECTION, WEBHOOK_KINDS
from fakturownia_sync_airflow.assets import FAKTUROWNIA_CLIENTS, FAKTUROWNIA_INVOICES

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/fakturownia"
MAX_BODY_BYTES = 1_000_000  # a webhook body is one record; anything bigger is not a webhook

# Every kind Fakturownia documents; only creates and updates of invoices and clients nudge a sync (deletions
# are never propagated, products are not synced). Another documented kind is answered 202 and ignored, so
# Fakturownia does not retry it; a kind outside this list is a malformed webhook.
DOCUMENTED_KINDS = frozenset(f"{record}:{action}" for record in ("invoice", "client", "product") for action in (
    "create", "update", "destroy"))  # fmt: skip
SYNCED_ASSETS = {
    kind: {"invoice": FAKTUROWNIA_INVOICES, "client": FAKTUROWNIA_CLIENTS}[kind.split(":", 1)[0]]
    for kind in WEBHOOK_KINDS
}
RECORD_KEYS = {"invoice": ("invoice", "deal"), "client": ("client",), "product": ("product",)}


class WebhookRejected(Exception):
    """A webhook answered with an HTTP error; the message never holds the token or the body."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class WebhookEvent:
    kind: str
    record_id: int

    @property
    def synced(self) -> bool:
        return self.kind in SYNCED_ASSETS

    @property
    def extra(self) -> dict[str, Any]:
        """The asset event's extra: all a run may learn from a webhook."""
        return {"kind": self.kind, "id": self.record_id}


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(status.HTTP_400_BAD_REQUEST, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(status.HTTP_400_BAD_REQUEST, "body is not a JSON object")
    return payload


def token_matches(given: Any, expected: str) -> bool:
    """Constant-time comparison, so response times do not reveal how much of a guess was right."""
    if not isinstance(given, str) or not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def parse_event(payload: Mapping[str, Any], query_kind: str | None = None) -> WebhookEvent:
    """Kind and record id of an authenticated webhook, or 400 naming what is missing."""
    kind = payload.get("kind")
    if kind is None or kind == "":
        kind = query_kind
    if not isinstance(kind, str) or not kind:
        raise WebhookRejected(
            status.HTTP_400_BAD_REQUEST, "no event kind: none in the body, none in the URL's ?kind= parameter"
        )
    kind = kind.strip().lower()
    if kind not in DOCUMENTED_KINDS:
        raise WebhookRejected(status.HTTP_400_BAD_REQUEST, f"unknown event kind {kind[:40]!r}")
    record_id = as_id(payload.get("id"))
    if record_id is None:
        for key in RECORD_KEYS[kind.split(":", 1)[0]]:
            record = payload.get(key)
            if isinstance(record, Mapping) and (record_id := as_id(record.get("id"))) is not None:
                break
    if record_id is None:
        raise WebhookRejected(status.HTTP_400_BAD_REQUEST, "no record id in the body")
    return WebhookEvent(kind, record_id)


def expected_token() -> str:
    """The webhook token from the connection (environment, secrets backend or metadata DB), looked up per
    request so a rotated token applies without restarting the api-server."""
    from airflow.models.connection import Connection  # server side only: see `record_asset_event`

    try:
        connection = Connection.get_connection_from_secrets(WEBHOOK_CONNECTION)
    except AirflowNotFoundException:
        connection = None
    if connection is None or not connection.password:
        log.warning("Fakturownia webhook refused: connection '%s' has no password set.", WEBHOOK_CONNECTION)
        raise WebhookRejected(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"webhooks are not set up (connection '{WEBHOOK_CONNECTION}')"
        )
    return connection.password


def record_asset_event(event: WebhookEvent) -> int:
    """One asset event, recorded as the core `POST /api/v2/assets/events` route records it (the scheduler then
    queues the DAGs scheduled on the asset); returns its id."""
    # Imported here, not at the top: DAG tasks import this module for `folded_events`, and a task should not
    # load the metadata-DB side of Airflow that only the api-server uses.
    from airflow.assets.manager import asset_manager
    from airflow.serialization.definitions.assets import SerializedAssetUniqueKey
    from airflow.utils.session import create_session

    asset = SYNCED_ASSETS[event.kind]
    with create_session() as session:
        recorded = asset_manager.register_asset_change(
            asset=SerializedAssetUniqueKey(name=asset.name, uri=asset.uri),
            extra=event.extra,
            source_is_api=True,
            api_user_teams=set(),
            session=session,
        )
        if recorded is None:  # the DAGs declaring the asset have not been parsed yet
            raise WebhookRejected(status.HTTP_503_SERVICE_UNAVAILABLE, f"asset {asset.uri} is not known to Airflow")
        return recorded.id


async def read_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise WebhookRejected(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large for a webhook")
    return bytes(body)


async def handle(request: Request) -> tuple[int, dict[str, Any]]:
    payload = parse_body(await read_body(request))
    if not token_matches(payload.get("api_token"), await run_in_threadpool(expected_token)):
        raise WebhookRejected(status.HTTP_401_UNAUTHORIZED, "webhook token not accepted")
    event = parse_event(payload, request.query_params.get("kind"))
    if not event.synced:
        return status.HTTP_202_ACCEPTED, {"status": "ignored", **event.extra}
    event_id = await run_in_threadpool(record_asset_event, event)
    log.info("Fakturownia webhook %s for record %s: asset event %s.", event.kind, event.record_id, event_id)
    return status.HTTP_202_ACCEPTED, {"status": "accepted", **event.extra, "asset_event_id": event_id}


router = APIRouter()


@router.post(WEBHOOK_PATH, status_code=status.HTTP_202_ACCEPTED)
async def receive_fakturownia_webhook(request: Request) -> JSONResponse:
    """`invoice:create|update` and `client:create|update` become asset events on the Fakturownia assets."""
    try:
        status_code, answer = await handle(request)
    except WebhookRejected as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            log.warning("Fakturownia webhook refused: token not accepted.")
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)
    return JSONResponse(answer, status_code=status_code)


def folded_events(triggering_asset_events: Mapping[Any, Iterable[Any]] | None) -> int:
    """Log the asset events Airflow lists for this run, and which records the webhooks among them named; returns
    their count. Events reached through an alias are listed under the alias too: counted once.

    A burst folds into one run, but Airflow 3.3 lists only the events up to the moment the run was first
    queued: later ones that arrived before the run was created start no run of their own and are not listed.
    Nothing is lost by that: such a run is created after them and sweeps, re-reading whatever they named."""
    events = [
        event
        for key, per_asset in (triggering_asset_events or {}).items()
        if not isinstance(key, AssetAlias)
        for event in per_asset
    ]
    if events:
        from_webhooks = [event for event in events if (event.extra or {}).keys() == {"kind", "id"}]
        ids = sorted({str(event.extra["id"]) for event in from_webhooks}, key=lambda text: (len(text), text))
        shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        log.info(
            "Airflow lists %d asset event(s) for this run, %d from webhooks (records %s); the run sweeps and "
            "re-reads as any run, so events folded in after it was queued are covered too.",
            len(events),
            len(from_webhooks),
            shown or "none",
        )
    return len(events)
