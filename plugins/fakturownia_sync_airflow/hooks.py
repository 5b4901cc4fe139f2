"""Hooks: Airflow connections → engine clients. Small on purpose, like the HTTP provider's `HttpHook`.

A hook only reads its connection's fields and hands them to `fakturownia_sync.connections`, which builds
the clients and the store the same way for the DAGs, the demo, the benchmarks and the tests.

`FakturowniaHook` and `SugesterHook` are the hooks of the connection types `fakturownia` and `sugester` that
the provider registers (`provider.py`): Airflow builds them by keyword (`fakturownia_conn_id=...`) for the
connection form's "Test" button, which calls `test_connection()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fakturownia_sync.account_check import describe_access_error
from fakturownia_sync.accounts import FAKTUROWNIA, SUGESTER, ApiAccount
from fakturownia_sync.connections import ApiEndpoint, connect_crm, connect_fakturownia, open_state_store, state_db_url
from fakturownia_sync.errors import ApiError, ConfigError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.transport import RetryPolicy
from fakturownia_sync_airflow.provider import FAKTUROWNIA_CONN_TYPE, SUGESTER_CONN_TYPE, field_behaviour

# The "Test" button holds a web request open while it waits: one retry, then an answer within seconds.
TEST_CONNECTION_POLICY = RetryPolicy(
    max_attempts=2,
    backoff_initial=0.5,
    backoff_max=2.0,
    max_retry_after=5.0,
    max_total_seconds=30.0,
    connect_timeout=5.0,
    read_timeout=15.0,
    attempt_deadline=20.0,
)


class _ApiHook(BaseHook):
    """Reads `password` (the API token) and `host` (account prefix or base URL) from a connection.

    The connection type does not matter: besides the provider's own type, `http` connections from
    `AIRFLOW_CONN_*` JSON work exactly the same, since only the fields are read.
    """

    api = ""

    def __init__(self, conn_id: str | None = None, *, requests_per_minute: int = 0) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        self.requests_per_minute = requests_per_minute

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form: host relabelled "Account or base URL", password "API token", the rest hidden."""
        return field_behaviour(cls.conn_type)

    def endpoint(self) -> ApiEndpoint:
        conn = self.get_connection(self.conn_id)
        if conn.password:
            mask_secret(conn.password)
        return ApiEndpoint(
            token=conn.password, host=conn.host, port=conn.port, schema=conn.schema, conn_id=self.conn_id
        )

    def account(self) -> ApiAccount:
        return self.endpoint().account(self.api)

    def _connect(self, endpoint: ApiEndpoint, policy: RetryPolicy | None) -> FakturowniaClient | SugesterClient:
        """The API client of this hook's API for `endpoint` (each subclass builds its own)."""
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        """The "Test" button: one cheap authenticated read with the connection's token.

        Returns (ok, message); the message names the account and its URL, never the token. The connection
        is not named: the form tests it under a random id that would mean nothing to the user.
        """
        try:
            endpoint = dataclasses.replace(self.endpoint(), conn_id="")
            client = self._connect(endpoint, TEST_CONNECTION_POLICY)
        except ConfigError as exc:
            return False, str(exc)
        account = client.account
        try:
            client.check_access()
        except ApiError as exc:
            return False, describe_access_error(account, exc) + "."
        return True, f"{account.api} account '{account.name}' ({account.base_url}) accepted the API token."


class FakturowniaHook(_ApiHook):
    conn_name_attr = "fakturownia_conn_id"
    default_conn_name = "fakturownia_default"
    conn_type = FAKTUROWNIA_CONN_TYPE
    hook_name = "Fakturownia.pl"
    api = FAKTUROWNIA

    def __init__(self, fakturownia_conn_id: str = default_conn_name, *, requests_per_minute: int = 0) -> None:
        super().__init__(fakturownia_conn_id, requests_per_minute=requests_per_minute)

    def _connect(self, endpoint: ApiEndpoint, policy: RetryPolicy | None) -> FakturowniaClient:
        return connect_fakturownia(endpoint, requests_per_minute=self.requests_per_minute, policy=policy)

    def get_conn(self, policy: RetryPolicy | None = None) -> FakturowniaClient:
        return self._connect(self.endpoint(), policy)


class SugesterHook(_ApiHook):
    conn_name_attr = "sugester_conn_id"
    default_conn_name = "sugester_default"
    conn_type = SUGESTER_CONN_TYPE
    hook_name = "Sugester CRM"
    api = SUGESTER

    def __init__(self, sugester_conn_id: str = default_conn_name, *, requests_per_minute: int = 0) -> None:
        super().__init__(sugester_conn_id, requests_per_minute=requests_per_minute)

    def _connect(self, endpoint: ApiEndpoint, policy: RetryPolicy | None) -> SugesterClient:
        return connect_crm(endpoint, requests_per_minute=self.requests_per_minute, policy=policy)

    def get_conn(self, policy: RetryPolicy | None = None) -> SugesterClient:
        return self._connect(self.endpoint(), policy)


class SyncStateHook(BaseHook):
    """The state DB: an SQLAlchemy URL in the connection's `extra.url` or URI; absent → SQLite in AIRFLOW_HOME."""

    conn_name_attr = "state_conn_id"
    default_conn_name = "fakturownia_sync_db"
    conn_type = "generic"
    hook_name = "Fakturownia sync state DB"

    def __init__(self, state_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.conn_id = state_conn_id

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
