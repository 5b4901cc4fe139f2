"""The Sugester CRM API (v1, under ``/app``) as far as the sync uses it.

Clients and deals carry an ``external_ids`` map that is merged, not replaced,
on every write; that map is what lets a re-run find the deal an earlier,
interrupted attempt already created. Deal validation follows the rules the
CRM enforces (name required, sane non-negative price, existing client and
department).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from sandbox.control import control_router
from sandbox.conventions import ApiError, Vendor, authorized_body, json_response, resource
from sandbox.faults import FaultInjector
from sandbox.listing import parse_page
from sandbox.stats import Stats
from sandbox.store import SugesterStore, ValidationFailed
from sandbox.vendor_app import lookup, vendor_app


def dump(store: SugesterStore) -> dict[str, Any]:
    return {
        "clients": [store.clients[i] for i in store.client_ids()],
        "deals": [store.deals[i] for i in store.deal_ids()],
        "departments": store.departments,
        "statuses": store.statuses,
    }


def create_app(
    store: SugesterStore,
    vendor: Vendor,
    injector: FaultInjector,
    stats: Stats,
    save: Callable[[], Awaitable[str | None]],
) -> FastAPI:
    app = vendor_app("Sugester sandbox", vendor)

    def write(action: Callable[[], dict[str, Any]], status: int = 200) -> Response:
        try:
            return json_response(action(), status)
        except ValidationFailed as exc:
            raise ApiError(422, exc.errors) from None

    @app.get("/app/clients.json")
    async def list_clients(request: Request) -> Response:
        await authorized_body(request, vendor)
        page = parse_page(request.query_params)
        return json_response([store.clients[i] for i in page.slice(store.client_ids())])

    @app.get("/app/clients/{client_id}.json")
    async def get_client(client_id: str, request: Request) -> Response:
        await authorized_body(request, vendor)
        return json_response(lookup(store.client, client_id, vendor))

    @app.post("/app/clients.json")
    async def create_client(request: Request) -> Response:
        body = await authorized_body(request, vendor)
        fields = resource(body, "client")
        return write(lambda: store.create_client(fields), 201)

    @app.api_route("/app/clients/{client_id}.json", methods=["PUT", "PATCH"])
    async def update_client(client_id: str, request: Request) -> Response:
        body = await authorized_body(request, vendor)
        record = lookup(store.client, client_id, vendor)
        fields = resource(body, "client")
        return write(lambda: store.update_client(record["id"], fields))

    @app.get("/app/deals.json")
    async def list_deals(request: Request) -> Response:
        await authorized_body(request, vendor)
        page = parse_page(request.query_params)
        return json_response([store.deals[i] for i in page.slice(store.deal_ids())])

    @app.get("/app/deals/{deal_id}.json")
    async def get_deal(deal_id: str, request: Request) -> Response:
        await authorized_body(request, vendor)
        return json_response(lookup(store.deal, deal_id, vendor))

    @app.post("/app/deals.json")
    async def create_deal(request: Request) -> Response:
        body = await authorized_body(request, vendor)
        fields = resource(body, "deal")
        return write(lambda: store.create_deal(fields), 201)

    @app.api_route("/app/deals/{deal_id}.json", methods=["PUT", "PATCH"])
    async def update_deal(deal_id: str, request: Request) -> Response:
        body = await authorized_body(request, vendor)
        record = lookup(store.deal, deal_id, vendor)
        fields = resource(body, "deal")
        return write(lambda: store.update_deal(record["id"], fields))

    @app.delete("/app/deals/{deal_id}.json")
    async def delete_deal(deal_id: str, request: Request) -> Response:
        await authorized_body(request, vendor)
        record = lookup(store.deal, deal_id, vendor)
        store.delete_deal(record["id"])
        return json_response({"status": "ok", "message": "Usunięto"})

    @app.get("/app/departments.json")
    async def list_departments(request: Request) -> Response:
        await authorized_body(request, vendor)
        return json_response(store.departments)

    @app.get("/app/statuses.json")
    async def list_statuses(request: Request) -> Response:
        """Statuses of one kind (`?kind=deal`: the deal pipeline), `[{id, name, code, kind}]`."""
        await authorized_body(request, vendor)
        return json_response(store.statuses_of_kind(request.query_params.get("kind")))

    @app.get("/app/users/team.json")
    async def list_team(request: Request) -> Response:
        await authorized_body(request, vendor)
        return json_response(store.users)

    app.include_router(control_router(injector, stats, lambda base: dump(store), save))
    return app
