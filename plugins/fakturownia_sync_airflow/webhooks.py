"""Receiver of Fakturownia webhooks, served by the plugin's FastAPI app at `/fakturownia-sync/webhooks/...`.

Not behind the Airflow login: a webhook authenticates by its own token (connection `fakturownia_webhook`).
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
