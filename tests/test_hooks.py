"""The hooks read Airflow connections the way DESIGN.md "Fixed names" promises, in milliseconds.

Connections come from `AIRFLOW_CONN_*` environment variables, the form users and `docker-compose.yaml`
write (JSON, or a URI built from an `airflow.sdk.Connection`), so no metadata DB is involved. Where a hook's
client makes a call, HTTP is faked at the transport with `requests_mock`.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests_mock
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowFailException

from fakturownia_sync.errors import ApiAuthError, ConfigError
from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook, SyncStateHook
from fakturownia_sync_airflow.tasks import check_setup
from sandbox.demo_config import DEMO_CONFIG

TOKEN = "Sekret0Tok3n-5f4e3d"


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    """Define a connection as `AIRFLOW_CONN_<ID>` JSON, as a deployment's environment would."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_host_as_account_prefix_means_the_vendors_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "fakturownia_default", conn_type="http", host="acme", password=TOKEN)
    set_connection(monkeypatch, "sugester_default", conn_type="http", host="acme", password=TOKEN)
    fakturownia, crm = FakturowniaHook().get_conn(), SugesterHook().get_conn()
    assert (fakturownia.account.base_url, fakturownia.account.name) == ("https://acme.fakturownia.pl", "acme")
    assert (crm.account.base_url, crm.account.name) == ("https://acme.sugester.pl", "acme")


def test_host_as_full_url_is_used_as_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "fakturownia_default", conn_type="http", host="http://127.0.0.1:18081/", password=TOKEN)
    account = FakturowniaHook().get_conn().account
    assert (account.base_url, account.name) == ("http://127.0.0.1:18081", "127.0.0.1:18081")


def test_token_with_account_prefix_and_no_host_names_the_account(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "sugester_default", conn_type="generic", password=f"{TOKEN}/firma")
    account = SugesterHook().get_conn().account
    assert (account.base_url, account.name, account.token) == ("https://firma.sugester.pl", "firma", f"{TOKEN}/firma")


def test_http_connection_given_as_uri_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """`http` is the type most `AIRFLOW_CONN_*` URIs carry; it must not change where requests go."""
    uri = Connection(conn_id="fakturownia_default", conn_type="http", host="acme", password=TOKEN).get_uri()
    monkeypatch.setenv("AIRFLOW_CONN_FAKTUROWNIA_DEFAULT", uri)
    client = FakturowniaHook().get_conn()
    with requests_mock.Mocker() as http:
        http.get("https://acme.fakturownia.pl/invoices.json", json=[])
        client.check_access()
    (sent,) = http.request_history
    assert sent.url.startswith("https://acme.fakturownia.pl/invoices.json?")
    assert parse_qs(urlsplit(sent.url).query)["api_token"] == [TOKEN]


@pytest.mark.parametrize("conn_type", ["fakturownia", "sugester", "http", "generic"])
def test_every_connection_type_is_read_the_same_way(monkeypatch: pytest.MonkeyPatch, conn_type: str) -> None:
    """The provider's types are for the UI's forms; the hooks read host and password whatever the type."""
    set_connection(monkeypatch, "fakturownia_default", conn_type=conn_type, host="acme", password=TOKEN)
    set_connection(monkeypatch, "sugester_default", conn_type=conn_type, host="http://127.0.0.1:19602", password=TOKEN)
    fakturownia, crm = FakturowniaHook().account(), SugesterHook().account()
    assert (fakturownia.base_url, fakturownia.name, fakturownia.token) == ("https://acme.fakturownia.pl", "acme", TOKEN)
    assert (crm.base_url, crm.name) == ("http://127.0.0.1:19602", "127.0.0.1:19602")


def test_hooks_take_their_connection_by_the_keyword_airflow_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Connection.get_hook()` builds a hook as `Hook(**{hook.conn_name_attr: conn_id})`."""
    set_connection(monkeypatch, "books_eu", conn_type="fakturownia", host="eu", password=TOKEN)
    set_connection(monkeypatch, "crm_eu", conn_type="sugester", host="eu", password=TOKEN)
    fakturownia = FakturowniaHook(**{FakturowniaHook.conn_name_attr: "books_eu"})
    crm = SugesterHook(**{SugesterHook.conn_name_attr: "crm_eu"})
    assert (fakturownia.conn_id, fakturownia.account().base_url) == ("books_eu", "https://eu.fakturownia.pl")
    assert (crm.conn_id, crm.account().base_url) == ("crm_eu", "https://eu.sugester.pl")


def test_named_connection_and_rate_limit_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "crm_eu", conn_type="http", host="https://eu.example.test:8443", password=TOKEN)
    client = SugesterHook("crm_eu", requests_per_minute=120).get_conn()
    assert client.account.base_url == "https://eu.example.test:8443"
    assert client.transport.budget.ceiling == 120 / 60  # requests per second


def test_connection_without_token_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "fakturownia_default", conn_type="http", host="acme")
    with pytest.raises(ConfigError, match="connection 'fakturownia_default' has no API token"):
        FakturowniaHook().get_conn()


def test_token_never_shows_in_what_the_hooks_return(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "fakturownia_default", conn_type="http", host="http://127.0.0.1:18081", password=TOKEN)
    set_connection(monkeypatch, "sugester_default", conn_type="http", password=f"{TOKEN}/firma")
    for hook in (FakturowniaHook(), SugesterHook()):
        client = hook.get_conn()
        shown = [client, client.transport, client.account, hook.endpoint(), hook.account()]
        for thing in shown:
            assert TOKEN not in repr(thing) and TOKEN not in str(thing), type(thing).__name__


def test_wrong_token_error_names_the_url_account_and_hides_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_FAKTUROWNIA_SYNC_CONFIG", json.dumps(DEMO_CONFIG))
    set_connection(monkeypatch, "fakturownia_default", conn_type="http", host="http://127.0.0.1:18081", password=TOKEN)
    set_connection(monkeypatch, "sugester_default", conn_type="http", host="http://127.0.0.1:18082", password=TOKEN)
    with requests_mock.Mocker() as http:
        http.get(
            "http://127.0.0.1:18081/invoices.json",
            status_code=401,
            json={"code": "error", "message": f"Niepoprawny api_token {TOKEN}"},
        )
        with pytest.raises(AirflowFailException) as failure:
            check_setup()
    message = str(failure.value)
    assert "account '127.0.0.1:18081'" in message
    assert "'127.0.0.1'" not in message
    assert TOKEN not in message
    assert "HTTP 401" in message and "connection 'fakturownia_default'" in message


def test_wrong_token_raises_typed_error_from_the_hooks_client(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "sugester_default", conn_type="http", host="acme", password=TOKEN)
    client = SugesterHook().get_conn()
    with requests_mock.Mocker() as http:
        http.get("https://acme.sugester.pl/app/clients.json", status_code=401, json={"error": f"bad token {TOKEN}"})
        with pytest.raises(ApiAuthError) as failure:
            client.check_access()
    assert failure.value.status == 401 and TOKEN not in str(failure.value)


# The state DB connection -----------------------------------------------------------------------------


def test_state_db_from_postgres_uri_gets_the_psycopg_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB", "postgresql://sync:p%40ss@db.internal:5432/fsync")
    assert SyncStateHook().url() == "postgresql+psycopg://sync:p%40ss@db.internal:5432/fsync"


def test_state_db_extra_url_wins_over_the_connection_fields(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    set_connection(monkeypatch, "fakturownia_sync_db", conn_type="postgres", host="elsewhere", extra={"url": url})
    assert SyncStateHook().url() == url


def test_state_db_sqlite_uri_keeps_its_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Regression: the URI Airflow rebuilds percent-encodes the path; the store must open the file named."""
    path = tmp_path / "sub" / "state.db"
    path.parent.mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB", f"sqlite:///{path}")
    assert SyncStateHook().url() == f"sqlite:///{path}"
    SyncStateHook().get_conn().close()
    assert path.exists()


def test_state_db_absent_is_sqlite_under_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert SyncStateHook().url() == f"sqlite:///{tmp_path / 'fakturownia_sync_state.db'}"
    store = SyncStateHook().get_conn()
    store.close()
    assert (tmp_path / "fakturownia_sync_state.db").exists()


def test_state_db_connection_naming_no_database_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "fakturownia_sync_db", conn_type="generic", description="forgot the URL")
    with pytest.raises(ConfigError, match="connection 'fakturownia_sync_db' names no database"):
        SyncStateHook().url()


def test_state_db_postgres_connection_opens_the_store(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    """A connection as users write it (`postgresql://`, no driver) reaches a real PostgreSQL."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB", postgres_url.replace("postgresql+psycopg://", "postgresql://")
    )
    store = SyncStateHook().get_conn()
    try:
        assert store.engine.dialect.name == "postgresql"
        assert store.engine.url.database == postgres_url.rsplit("/", 1)[1]
    finally:
        store.close()
