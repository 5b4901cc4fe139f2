"""The plugin's FastAPI app, mounted by Airflow's api-server at `/fakturownia-sync`.

Two routers with different doors: the page and its actions need an Airflow login (their router carries the
auth manager's dependency), while the webhook receiver (`fakturownia_sync_airflow.webhooks`) is called by
Fakturownia, which has no Airflow login, and checks its own token. The dependency therefore sits on the page
router, not on the app: on the app it would lock the webhooks out.

Every Airflow process loads plugins, task workers included (for macros), but only the api-server serves
this app. So the app is created bare and its routers (which import Airflow's web security and the sync
engine) are added when the api-server starts it (the lifespan Airflow runs for mounted apps), or at the
latest on its first request; a task pays for FastAPI only.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

URL_PREFIX = "/fakturownia-sync"


class IntegrationApp(FastAPI):
    """A FastAPI app that adds its routers once, before it serves anything."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(lifespan=_lifespan, **kwargs)
        self._routes_lock = threading.Lock()
        self._routes_added = False

    def add_routes(self) -> None:
        with self._routes_lock:
            if self._routes_added:
                return
            from fakturownia_sync_airflow import webhooks
            from fakturownia_sync_airflow.ui.routes import router as page_router

            self.include_router(webhooks.router)
            self.include_router(page_router)
            self._routes_added = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self._routes_added:
            self.add_routes()
        await super().__call__(scope, receive, send)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    if isinstance(app, IntegrationApp):
        app.add_routes()
    yield


def create_app() -> IntegrationApp:
    return IntegrationApp(
        title="Fakturownia ↔ CRM sync",
        description="The integration page (Airflow login required) and the Fakturownia webhook receiver.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
