"""The Airflow plugin: the integration's page under Browse and the webhook receiver (one FastAPI app)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class FakturowniaSyncPlugin(AirflowPlugin):
    name = "fakturownia_sync"
