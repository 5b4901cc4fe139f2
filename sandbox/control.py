"""The ``/_sandbox/*`` control API served next to each vendor API.

Tests, the demo and benchmarks use it to turn fault knobs, read request
counters, dump every record, persist state and make a list move between two
page reads (``/_sandbox/list_moves``). It needs no token and is never
faulted or counted, so observing the sandbox does not disturb what is observed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.conventions import json_response
from sandbox.faults import FaultInjector
from sandbox.listing import LIST_MOVES
from sandbox.stats import Stats


def control_router(
    injector: FaultInjector,
    stats: Stats,
    dump: Callable[[str], dict[str, Any]],
    save: Callable[[], Awaitable[str | None]],
) -> APIRouter:
    router = APIRouter(prefix="/_sandbox")

    @router.get("/health")
    async def health() -> Response:
        return json_response({"ok": True})

    @router.get("/stats")
    async def read_stats() -> Response:
        return json_response(stats.snapshot())

    @router.post("/stats/reset")
    async def reset_stats() -> Response:
        stats.reset()
        return json_response(stats.snapshot())

    @router.get("/faults")
    async def read_faults() -> Response:
        return json_response(injector.knobs.as_dict())

    @router.post("/faults")
    async def set_faults(request: Request) -> Response:
        try:
            changes = await request.json() if (await request.body()).strip() else {}
        except ValueError:
            return json_response({"ok": False, "error": "body must be JSON"}, 400)
        if not isinstance(changes, dict):
            return json_response({"ok": False, "error": "body must be a JSON object"}, 400)
        try:
            knobs = injector.configure(changes)
        except ValueError as exc:
            return json_response({"ok": False, "error": str(exc)}, 422)
        return json_response(knobs.as_dict())

    @router.get("/list_moves")
    async def read_list_moves() -> Response:
        return json_response(LIST_MOVES.pending())

    @router.post("/list_moves")
    async def arm_list_move(request: Request) -> Response:
        """Make a list move between two page reads (see `sandbox.listing.ListMoves`)."""
        try:
            body = await request.json()
        except ValueError:
            return json_response({"ok": False, "error": "body must be JSON"}, 400)
        if not isinstance(body, dict):
            return json_response({"ok": False, "error": "body must be a JSON object"}, 400)
        try:
            LIST_MOVES.arm(
                str(body.get("list")),
                after_reads=body.get("after_reads", 1),
                delete=body.get("delete", 0),
                insert=body.get("insert", 0),
            )
        except ValueError as exc:
            return json_response({"ok": False, "error": str(exc)}, 422)
        return json_response(LIST_MOVES.pending())

    @router.get("/dump")
    async def read_dump(request: Request) -> Response:
        return json_response(dump(str(request.base_url).rstrip("/")))

    @router.post("/save")
    async def save_state() -> Response:
        path = await save()
        if path is None:
            return json_response({"ok": False, "error": "no --state-file configured"}, 409)
        return json_response({"ok": True, "path": path})

    return router
