"""The Fakturownia REST API as far as the sync uses it: invoices, clients, departments, webhooks.

Shapes and quirks follow ``reference/fakturownia-api.md``: bare JSON arrays,
``per_page`` capped at 100, the ``last_12_months`` default period, sales-only
unless ``income=no``, positions only with ``include_positions=true``, 401/404/422
bodies in the vendor's words.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, Response

from sandbox.clock import today
from sandbox.control import control_router
from sandbox.conventions import ApiError, Vendor, authorized_body, json_response, resource
from sandbox.faults import FaultInjector
from sandbox.listing import parse_order, parse_page, period_window
from sandbox.records import render_invoice
from sandbox.stats import Stats
from sandbox.store import ClientFilter, FakturowniaStore, InvoiceFilter, ValidationFailed, as_bool, as_int
from sandbox.vendor_app import lookup, vendor_app
from sandbox.webhooks import WebhookDelivery
from sandbox.webhooks import control_router as webhooks_control_router

INVOICE_ORDER_FIELDS = (
    "id",
    "number",
    "updated_at",
    "created_at",
    "issue_date",
    "price_net",
    "price_gross",
    "price_tax",
    "payment_to",
    "paid_date",
    "transaction_date",
    "buyer_name",
    "buyer_tax_no",
    "seller_name",
    "oid",
)
CLIENT_ORDER_FIELDS = ("id", "updated_at", "created_at", "name")
SEARCH_DATE_TYPES = frozenset({"issue_date", "paid_date", "transaction_date"})
NO_VALUES = frozenset({"no", "0", "false"})


def invoice_filter(request: Request) -> InvoiceFilter:
    """Translate the documented query parameters into a cacheable filter."""
    params = request.query_params
    window = period_window(params, today())
    kinds = [k for k in params.getlist("kinds[]") + params.getlist("kinds") if k]
    if params.get("kind"):
        kinds.append(params["kind"])
    ids = None
    if params.get("invoice_ids") is not None:
        ids = frozenset(i for i in (as_int(p) for p in params["invoice_ids"].split(",")) if i is not None)
    date_field = params.get("search_date_type", "issue_date")
    return InvoiceFilter(
        income=(params.get("income") or "").strip().lower() not in NO_VALUES,
        date_field=date_field if date_field in SEARCH_DATE_TYPES else "issue_date",
        dated=window is not None,
        date_from=window[0].isoformat() if window and window[0] else None,
        date_to=window[1].isoformat() if window and window[1] else None,
        kinds=frozenset(kinds) if kinds else None,
        client_id=_id_param(params.get("client_id")),
        ids=ids,
        number=params.get("number"),
        invoice_id=_id_param(params.get("invoice_id")),
        from_invoice_id=_id_param(params.get("from_invoice_id")),
        oid=params.get("oid") or None,
    )


def _id_param(value: str | None) -> int | None:
    """An id filter; a present but non-numeric value matches nothing (id -1)."""
    if value is None or value == "":
        return None
    parsed = as_int(value)
    return -1 if parsed is None else parsed


def client_filter(request: Request) -> ClientFilter:
    params = request.query_params

    def folded(name: str) -> str | None:
        value = params.get(name)
        return value.strip().casefold() if value else None

    return ClientFilter(
        external_id=params.get("external_id"),
        tax_no=params.get("tax_no"),
        email=folded("email"),
        name=folded("name"),
        shortcut=folded("shortcut"),
    )


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def dump(store: FakturowniaStore, base: str) -> dict[str, Any]:
    """Every record, cost invoices included, for tests that inspect the whole state."""
    return {
        "clients": [store.clients[i] for i in sorted(store.clients)],
        "invoices": [render_invoice(store.invoices[i], base) for i in sorted(store.invoices)],
        "departments": store.departments,
    }


def create_app(
    store: FakturowniaStore,
    vendor: Vendor,
    injector: FaultInjector,
    stats: Stats,
    save: Callable[[], Awaitable[str | None]],
    webhooks: WebhookDelivery | None = None,
) -> FastAPI:
    app = vendor_app("Fakturownia sandbox", vendor)

    def stored(kind: str, record: dict[str, Any]) -> dict[str, Any]:
        """A create or update went through: its webhooks go out (in the background), as Fakturownia's do."""
        if webhooks is not None:
            webhooks.emit(kind, record)
        return record

    def rendered(invoice: dict[str, Any], request: Request, status: int = 200) -> Response:
        return json_response(render_invoice(invoice, base_url(request)), status)

    @app.get("/invoices.json")
    async def list_invoices(request: Request) -> Response:
        await authorized_body(request, vendor)
        params = request.query_params
        order = parse_order(params.get("order"), INVOICE_ORDER_FIELDS, "id.desc")
        ids = store.invoice_ids(invoice_filter(request), order)
        with_positions = as_bool(params.get("include_positions", ""))
        base = base_url(request)
        page = parse_page(params)
        items = [render_invoice(store.invoices[i], base, with_positions=with_positions) for i in page.slice(ids)]
        return json_response(items)

    @app.get("/invoices/{invoice_id}.json")
    async def get_invoice(invoice_id: str, request: Request) -> Response:
        await authorized_body(request, vendor)
        return rendered(lookup(store.invoice, invoice_id, vendor), request)

    @app.post("/invoices.json")
    async def create_invoice(request: Request) -> Response:
        body = await authorized_body(request, vendor)
        try:
            invoice = store.create_invoice(resource(body, "invoice"))
        except ValidationFailed as exc:
            raise ApiError(422, exc.errors) from None
        return json_response(stored("invoice:create", render_invoice(invoice, base_url(request))), 201)

    @app.api_route("/invoices/{invoice_id}.json", methods=["PUT", "PATCH"])
    async def update_invoice(invoice_id: str, request: Request) -> Response:
        body = await authorized_body(request, vendor)
        record = lookup(store.invoice, invoice_id, vendor)
        try:
            invoice = store.update_invoice(record["id"], resource(body, "invoice"))
        except ValidationFailed as exc:
            raise ApiError(422, exc.errors) from None
        return json_response(stored("invoice:update", render_invoice(invoice, base_url(request))))

    @app.delete("/invoices/{invoice_id}.json")
    async def delete_invoice(invoice_id: str, request: Request) -> Response:
        await authorized_body(request, vendor)
        record = lookup(store.invoice, invoice_id, vendor)
        store.delete_invoice(record["id"])
        return json_response({"code": "success", "message": "Usunięto"})

    @app.get("/clients.json")
    async def list_clients(request: Request) -> Response:
        await authorized_body(request, vendor)
        params = request.query_params
        order = parse_order(params.get("order"), CLIENT_ORDER_FIELDS, "id")
        ids = store.client_ids(client_filter(request), order)
        return json_response([store.clients[i] for i in parse_page(params).slice(ids)])

    @app.get("/clients/{client_id}.json")
    async def get_client(client_id: str, request: Request) -> Response:
        await authorized_body(request, vendor)
        return json_response(lookup(store.client, client_id, vendor))

    @app.post("/clients.json")
    async def create_client(request: Request) -> Response:
        body = await authorized_body(request, vendor)
        try:
            client = store.create_client(resource(body, "client"))
        except ValidationFailed as exc:
            raise ApiError(422, exc.errors) from None
        return json_response(stored("client:create", client), 201)

    @app.api_route("/clients/{client_id}.json", methods=["PUT", "PATCH"])
    async def update_client(client_id: str, request: Request) -> Response:
        body = await authorized_body(request, vendor)
        record = lookup(store.client, client_id, vendor)
        try:
            client = store.update_client(record["id"], resource(body, "client"))
        except ValidationFailed as exc:
            raise ApiError(422, exc.errors) from None
        return json_response(stored("client:update", client))

    @app.get("/departments.json")
    async def list_departments(request: Request) -> Response:
        await authorized_body(request, vendor)
        return json_response(store.departments)

    def webhooks_api() -> None:
        """The webhook API as an account without it answers (`/_sandbox/webhooks_api`): 403 or 404."""
        if store.webhooks_api_status is not None:
            message = vendor.not_found if store.webhooks_api_status == 404 else "Brak dostępu"
            raise ApiError(store.webhooks_api_status, message)

    @app.get("/webhooks.json")
    async def list_webhooks(request: Request) -> Response:
        await authorized_body(request, vendor)
        webhooks_api()
        return json_response([store.webhooks[i] for i in sorted(store.webhooks)])

    @app.post("/webhooks.json")
    async def create_webhook(request: Request) -> Response:
        body = await authorized_body(request, vendor)
        webhooks_api()
        try:
            webhook = store.create_webhook(resource(body, "webhook"))
        except ValidationFailed as exc:
            raise ApiError(422, exc.errors) from None
        return json_response(webhook, 201)

    @app.get("/invoice/{token}")
    async def public_view(token: str) -> Response:
        """The no-login page ``view_url`` points at, so links in the demo UI lead somewhere."""
        invoice = next((i for i in store.invoices.values() if i.get("token") == token), None)
        if invoice is None:
            return HTMLResponse("<h1>Nie znaleziono dokumentu</h1>", status_code=404)
        full = render_invoice(invoice, "")
        rows = "".join(
            f"<tr><td>{html.escape(str(p['name']))}</td><td>{p['quantity']}</td>"
            f"<td>{p['price_net']}</td><td>{p['tax']}%</td><td>{p['total_price_gross']}</td></tr>"
            for p in full["positions"]
        )
        page = (
            f"<!DOCTYPE html><html lang='pl'><head><meta charset='utf-8'>"
            f"<title>{html.escape(full['kind_text'])} {html.escape(str(full['number']))}</title></head><body>"
            f"<h1>{html.escape(full['kind_text'])} {html.escape(str(full['number']))}</h1>"
            f"<p>Data wystawienia: {html.escape(str(full['issue_date']))}</p>"
            f"<p>Sprzedawca: {html.escape(str(full['seller_name']))}<br>"
            f"Nabywca: {html.escape(str(full['buyer_name']))}</p>"
            f"<table><tr><th>Nazwa</th><th>Ilość</th><th>Cena netto</th><th>VAT</th><th>Brutto</th></tr>"
            f"{rows}</table><p>Razem brutto: {full['price_gross']} {html.escape(str(full['currency']))}</p>"
            f"</body></html>"
        )
        return HTMLResponse(page)

    @app.post("/_sandbox/lose_invoice_create_replies")
    async def lose_invoice_create_replies(request: Request) -> Response:
        """Control: `{"count": n}` loses the answers to the next n invoice creates (applied, then the line cut)."""
        try:
            count = (await request.json()).get("count", 1)
        except (ValueError, AttributeError):
            return json_response({"ok": False, "error": "body must be a JSON object"}, 400)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return json_response({"ok": False, "error": "count must be a whole number >= 0"}, 422)
        return json_response({"lose_invoice_create_replies": injector.lose_replies("/invoices.json", count)})

    @app.post("/_sandbox/webhooks_api")
    async def set_webhooks_api(request: Request) -> Response:
        """Control: `{"status": 403|404}` makes `/webhooks.json` answer so (no webhook API); `null` restores it."""
        try:
            status = (await request.json()).get("status")
        except (ValueError, AttributeError):
            return json_response({"ok": False, "error": "body must be a JSON object"}, 400)
        if status not in (None, 403, 404):
            return json_response({"ok": False, "error": "status must be 403, 404 or null"}, 422)
        store.webhooks_api_status = status
        return json_response({"webhooks_api_status": status})

    app.include_router(control_router(injector, stats, lambda base: dump(store, base), save))
    if webhooks is not None:
        app.include_router(webhooks_control_router(webhooks))
    return app
