"""Helpers for tests of the two-way client sync against the sandbox over real sockets."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

from fakturownia_sync.clients_sync import ClientsSync
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import external_ids_of
from fakturownia_sync.timing import STALE_CLAIM_MINUTES
from tests.sync_harness import clients_for, demo_config


def make_clients_sync(
    sandbox: Any,
    store: StateStore,
    config: SyncConfig | None = None,
    *,
    owner: str = "tests/clients-1",
    full: bool = False,
    stale_claim_minutes: int = STALE_CLAIM_MINUTES,
) -> ClientsSync:
    fakturownia, crm = clients_for(sandbox)
    return ClientsSync(
        fakturownia,
        crm,
        store,
        config or demo_config(),
        owner=owner,
        full=full,
        stale_claim_minutes=stale_claim_minutes,
    )


def writes(sandbox: Any) -> dict[str, int]:
    """Every write request either API received since the last `reset_stats`, by endpoint."""
    return {**sandbox.stats("fakturownia")["writes"], **sandbox.stats("sugester")["writes"]}


def put_client(sandbox: Any, api: str, client_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """A user's edit, made straight through the vendor API (not through the code under test)."""
    path = f"/clients/{client_id}.json" if api == "fakturownia" else f"/app/clients/{client_id}.json"
    response = requests.put(
        f"{sandbox.url(api)}{path}", json={"api_token": sandbox.token(api), "client": fields}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def clients_of(sandbox: Any, api: str) -> dict[int, dict[str, Any]]:
    return {client["id"]: client for client in sandbox.dump(api)["clients"]}


def copies_per_source(sandbox: Any) -> tuple[dict[str, int], dict[str, int]]:
    """How many CRM clients name each Fakturownia client, and how many Fakturownia clients name each CRM
    client, through the external ids the sync sets: more than one is a duplicate the sync made."""
    crm_copies: dict[str, int] = {}
    for client in sandbox.dump("sugester")["clients"]:
        source = external_ids_of(client).get("fakturownia_client_id")
        if source:
            crm_copies[source] = crm_copies.get(source, 0) + 1
    fakturownia_copies: dict[str, int] = {}
    for client in sandbox.dump("fakturownia")["clients"]:
        source = client.get("external_id")
        if source:
            fakturownia_copies[source] = fakturownia_copies.get(source, 0) + 1
    return crm_copies, fakturownia_copies


def post_client(sandbox: Any, api: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A client a user adds straight through the vendor API."""
    path = "/clients.json" if api == "fakturownia" else "/app/clients.json"
    response = requests.post(
        f"{sandbox.url(api)}{path}", json={"api_token": sandbox.token(api), "client": fields}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def delete_clients(sandbox: Any, fakturownia: Iterable[int] = (), crm: Iterable[int] = ()) -> None:
    """Delete clients the way a user does in either system. The sandbox has no client DELETE, so its state file
    is saved, the clients are taken out of it, and the sandbox is started again from it (new ports)."""
    path = Path(sandbox.save())
    sandbox.stop()
    document = json.loads(path.read_text(encoding="utf-8"))
    for api, ids in (("fakturownia", set(fakturownia)), ("sugester", set(crm))):
        document[api]["clients"] = [client for client in document[api]["clients"] if client["id"] not in ids]
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    sandbox.start()
