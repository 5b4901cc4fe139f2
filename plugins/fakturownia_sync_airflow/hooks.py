"""Hooks: Airflow connections → engine clients. Small on purpose, like the HTTP provider's `HttpHook`.

A hook only reads its connection's fields and hands them to `fakturownia_sync.connections`, which builds
the clients and the store the same way for the DAGs, the demo, the benchmarks and the tests.
"""

from __future__ import annotations

import contextlib
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fakturownia_sync.accounts import FAKTUROWNIA, SUGESTER, ApiAccount
from fakturownia_sync.connections import ApiEndpoint, connect_crm, connect_fakturownia, open_state_store, state_db_url
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.transport import RetryPolicy


class _ApiHook(BaseHook):
    """Reads `password` (the API token) and `host` (account prefix or base URL) from a connection.

    The connection type does not matter; `http` connections from `AIRFLOW_CONN_*` JSON work.
    """

    conn_type = "http"
    api = ""

    def __init__(self, conn_id: str | None = None, *, requests_per_minute: int = 0) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        self.requests_per_minute = requests_per_minute

    def endpoint(self) -> ApiEndpoint:
        conn = self.get_connection(self.conn_id)
        if conn.password:
            mask_secret(conn.password)
        return ApiEndpoint(
            token=conn.password, host=conn.host, port=conn.port, schema=conn.schema, conn_id=self.conn_id
        )

    def account(self) -> ApiAccount:
        return self.endpoint().account(self.api)


class FakturowniaHook(_ApiHook):
    conn_name_attr = "fakturownia_conn_id"
    default_conn_name = "fakturownia_default"
    hook_name = "Fakturownia.pl"
    api = FAKTUROWNIA

    def get_conn(self, policy: RetryPolicy | None = None) -> FakturowniaClient:
        return connect_fakturownia(self.endpoint(), requests_per_minute=self.requests_per_minute, policy=policy)


class SugesterHook(_ApiHook):
    conn_name_attr = "sugester_conn_id"
    default_conn_name = "sugester_default"
    hook_name = "Sugester CRM"
    api = SUGESTER

    def get_conn(self, policy: RetryPolicy | None = None) -> SugesterClient:
        return connect_crm(self.endpoint(), requests_per_minute=self.requests_per_minute, policy=policy)


class SyncStateHook(BaseHook):
    """The state DB: an SQLAlchemy URL in the connection's `extra.url` or URI; absent → SQLite in AIRFLOW_HOME."""

    conn_name_attr = "state_conn_id"
    default_conn_name = "fakturownia_sync_db"
    conn_type = "generic"
    hook_name = "Fakturownia sync state DB"

    def __init__(self, conn_id: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name

    def url(self) -> str:
        try:
            conn = self.get_connection(self.conn_id)
        except AirflowNotFoundException:
            return state_db_url(None)
        if conn.password:
            mask_secret(conn.password)
        extra: dict[str, Any] = conn.extra_dejson or {}
        if extra.get("url"):
            with contextlib.suppress(ArgumentError):  # a malformed URL is refused, by name, when it is opened
                password = make_url(extra["url"]).password
                if password:
                    mask_secret(str(password))
        return state_db_url(
            extra.get("url"),
            scheme=conn.conn_type,
            host=conn.host,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            database=conn.schema,
            conn_id=self.conn_id,
        )

    def get_conn(self) -> StateStore:
        return open_state_store(self.url())
