"""How each vendor authenticates and words its errors.

Both APIs read ``api_token`` from the query string on GET/DELETE and from the
top-level JSON body on POST/PUT/PATCH (a ``Bearer`` header works too), and
both answer errors as ``{<key>: "error", "message": ...}``; only the key and
the wording differ. Handlers raise :class:`ApiError` and the app renders it in
its vendor's words.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Vendor:
    """One vendor's token and error wording."""

    name: str
    token: str
    error_key: str
    unauthorized: str
    not_found: str
    internal_error_body: str

    def error_body(self, message: object) -> dict[str, Any]:
        return {self.error_key: "error", "message": message}


def fakturownia(token: str) -> Vendor:
    return Vendor(
        name="fakturownia",
        token=token,
        error_key="code",
        unauthorized="You must be logged in to gain access to the site",
        not_found="Not found",
        internal_error_body="Wewnętrzny błąd - spróbuj ponownie",
    )


def sugester(token: str) -> Vendor:
    return Vendor(
        name="sugester",
        token=token,
        error_key="status",
        unauthorized="Nieprawidłowy api_token",
        not_found="Nie znaleziono",
        internal_error_body="Wewnętrzny błąd - spróbuj ponownie",
    )


class ApiError(Exception):
    """An error answer; the app renders it with its vendor's envelope."""

    def __init__(self, status: int, message: object) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def json_response(content: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """UTF-8 JSON as the vendors send it (Polish letters unescaped)."""
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json; charset=utf-8", headers=headers)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; empty for bodiless methods, 400 when unparseable."""
    if request.method not in BODY_METHODS:
        return {}
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Nieprawidłowy format JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Nieprawidłowy format JSON")
    return body


def presented_token(request: Request, body: dict[str, Any]) -> str | None:
    """The token the caller sent: Bearer header, then body (writes), then query string."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if request.method in BODY_METHODS and isinstance(body.get("api_token"), str):
        return body["api_token"]
    return request.query_params.get("api_token")


async def authorized_body(request: Request, vendor: Vendor) -> dict[str, Any]:
    """Check the caller's token and return the parsed body; 401 in the vendor's words otherwise."""
    body = await json_body(request)
    token = presented_token(request, body)
    if token is None or not hmac.compare_digest(token.encode(), vendor.token.encode()):
        raise ApiError(401, vendor.unauthorized)
    return body


def resource(body: dict[str, Any], wrapper: str) -> dict[str, Any]:
    """The ``{"invoice": {...}}``-style wrapped object of a write (empty when absent)."""
    value = body.get(wrapper)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"Parametr {wrapper} musi być obiektem")
    return value


def path_id(raw: str, vendor: Vendor) -> int:
    """A numeric id from the URL; anything else is simply not found."""
    if not raw.isdigit():
        raise ApiError(404, vendor.not_found)
    return int(raw)
