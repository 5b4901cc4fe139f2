"""What both vendor apps share: the FastAPI app with the vendor's error bodies, and record look-up by id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sandbox.conventions import ApiError, Vendor, json_response, path_id
from sandbox.store import NotFound


def vendor_app(title: str, vendor: Vendor) -> FastAPI:
    """A FastAPI app whose errors (ours and the framework's 404/405) come in the vendor's body shape."""
    app = FastAPI(title=title, openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return json_response(vendor.error_body(exc.message), exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = vendor.not_found if exc.status_code == 404 else str(exc.detail)
        return json_response(vendor.error_body(message), exc.status_code)

    return app


def lookup(getter: Callable[[int], dict[str, Any]], raw_id: str, vendor: Vendor) -> dict[str, Any]:
    """The record with the id in the path, or the vendor's 404."""
    try:
        return getter(path_id(raw_id, vendor))
    except NotFound:
        raise ApiError(404, vendor.not_found) from None
