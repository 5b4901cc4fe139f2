"""Building the two API clients and the state store from plain values: the one place that does it.

The Airflow hooks read these values from connections, the demo and the benchmarks from the sandbox's
announcement, the tests from a running sandbox; all of them hand the values here, so an account is
resolved, rate-limited and retried the same way whoever runs the engine. Nothing here imports Airflow.

The values travel between processes too (a benchmark or soak worker, a test's worker that gets killed),
as the JSON mapping `SyncEndpoints.as_mapping()` writes and `SyncEndpoints.from_mapping()` reads:
`fakturownia_url`, `fakturownia_token`, `sugester_url`, `sugester_token` and optionally `state_url`.
Tokens never show in the repr of anything built here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sqlalchemy.engine import URL

from fakturownia_sync.accounts import FAKTUROWNIA, SUGESTER, ApiAccount, resolve_account
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.state import StateStore, default_state_url
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.transport import RetryPolicy

# Connection types that name PostgreSQL, and the driver the engine ships with.
_POSTGRES_SCHEMES = ("postgres", "postgresql")
_POSTGRES_DRIVER = "postgresql+psycopg"


@dataclass(frozen=True)
class ApiEndpoint:
    """One vendor account as connection fields: `host` is an account prefix, a host name or a base URL;
    `token` may be written `TOKEN/prefix`, and then names the account when there is no host."""

    token: str | None = field(repr=False)
    host: str | None = None
    port: int | None = None
    schema: str | None = None
    conn_id: str = ""

    def account(self, api: str) -> ApiAccount:
        return resolve_account(
            api, token=self.token, host=self.host, port=self.port, schema=self.schema, conn_id=self.conn_id
        )


def connect_fakturownia(
    endpoint: ApiEndpoint, *, requests_per_minute: int = 0, policy: RetryPolicy | None = None
) -> FakturowniaClient:
    """A Fakturownia client for this account; `requests_per_minute` 0 means no client-side limit."""
    return FakturowniaClient.connect(
        endpoint.account(FAKTUROWNIA), requests_per_minute=requests_per_minute, policy=policy
    )


def connect_crm(
    endpoint: ApiEndpoint, *, requests_per_minute: int = 0, policy: RetryPolicy | None = None
) -> SugesterClient:
    """A Sugester CRM client for this account; `requests_per_minute` 0 means no client-side limit."""
    return SugesterClient.connect(endpoint.account(SUGESTER), requests_per_minute=requests_per_minute, policy=policy)


def state_db_url(
    url: str | None = None,
    *,
    scheme: str | None = None,
    host: str | None = None,
    port: int | None = None,
    login: str | None = None,
    password: str | None = None,
    database: str | None = None,
    conn_id: str = "",
) -> str:
    """The SQLAlchemy URL of the state DB.

    A whole `url` wins; otherwise the URL is assembled from the parts (the fields of a connection,
    `scheme` being its type); with neither, the default SQLite file under `$AIRFLOW_HOME`. `postgres://`
    and `postgresql://` get the psycopg driver the engine installs. Parts are not percent-encoded twice,
    so an SQLite path such as `/srv/state.db` stays a path.
    """
    if url:
        scheme_part, sep, rest = url.partition("://")
        return f"{_POSTGRES_DRIVER}://{rest}" if sep and scheme_part in _POSTGRES_SCHEMES else url
    if not scheme and not host and not database:
        return default_state_url()
    if not scheme or (not host and not database):
        where = f"connection '{conn_id}'" if conn_id else "the state DB connection"
        raise ConfigError(
            f"{where} names no database: give it an SQLAlchemy URL (as its URI or in extra 'url'), "
            "or remove it to use the SQLite file under $AIRFLOW_HOME."
        )
    driver = _POSTGRES_DRIVER if scheme in _POSTGRES_SCHEMES else scheme
    built = URL.create(
        driver, username=login or None, password=password or None, host=host or None, port=port, database=database
    )
    return built.render_as_string(hide_password=False)


def open_state_store(url: str | None = None) -> StateStore:
    """The state store at `url` (see `state_db_url`), its schema brought up to date."""
    return StateStore.open(state_db_url(url))


@dataclass(frozen=True)
class SyncEndpoints:
    """Both accounts and the state DB: everything a run of the engine connects to."""

    fakturownia: ApiEndpoint
    crm: ApiEndpoint
    state_url: str | None = None

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any]) -> SyncEndpoints:
        """Read the JSON shape of this module's docstring (a sandbox announcement has the same keys)."""
        return cls(
            fakturownia=ApiEndpoint(token=spec.get("fakturownia_token"), host=spec.get("fakturownia_url")),
            crm=ApiEndpoint(token=spec.get("sugester_token"), host=spec.get("sugester_url")),
            state_url=spec.get("state_url"),
        )

    @classmethod
    def of(cls, source: Any, state_url: str | None = None) -> SyncEndpoints:
        """From any object with the mapping's keys as attributes (a running sandbox, a namespace)."""
        keys = ("fakturownia_url", "fakturownia_token", "sugester_url", "sugester_token", "state_url")
        spec = {key: getattr(source, key, None) for key in keys}
        return cls.from_mapping({**spec, "state_url": state_url or spec["state_url"]})

    def as_mapping(self) -> dict[str, Any]:
        """The JSON shape, to hand these endpoints to a worker process (it holds the tokens: keep it private)."""
        spec = {
            "fakturownia_url": self.fakturownia.host,
            "fakturownia_token": self.fakturownia.token,
            "sugester_url": self.crm.host,
            "sugester_token": self.crm.token,
        }
        return {**spec, "state_url": self.state_url} if self.state_url else spec


def connect_apis(
    endpoints: SyncEndpoints, *, requests_per_minute: int = 0, policy: RetryPolicy | None = None
) -> tuple[FakturowniaClient, SugesterClient]:
    """Both API clients, with the same limit and retry policy."""
    return (
        connect_fakturownia(endpoints.fakturownia, requests_per_minute=requests_per_minute, policy=policy),
        connect_crm(endpoints.crm, requests_per_minute=requests_per_minute, policy=policy),
    )


@dataclass
class SyncConnections:
    """What a run of the engine works with; closing it releases the state DB's connections."""

    fakturownia: FakturowniaClient
    crm: SugesterClient
    store: StateStore

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> SyncConnections:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def connect(
    endpoints: SyncEndpoints, *, requests_per_minute: int = 0, policy: RetryPolicy | None = None
) -> SyncConnections:
    """Both API clients and the state store (migrated), ready for `InvoicesToDeals` or `ClientsSync`."""
    fakturownia, crm = connect_apis(endpoints, requests_per_minute=requests_per_minute, policy=policy)
    return SyncConnections(fakturownia, crm, open_state_store(endpoints.state_url))
