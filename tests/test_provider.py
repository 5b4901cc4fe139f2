"""The project as an Airflow provider: Airflow finds it, shows `fakturownia` and `sugester` connection forms,
and their "Test" button reaches the account with the connection's token and says which account answered.

`test_connection()` runs against a real sandbox over sockets; the REST API check starts a real
`airflow api-server` (with `[core] test_connection = Enabled`, which Airflow requires before it tests any
connection) and logs in as a SimpleAuthManager user.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from airflow.providers_manager import ProvidersManager
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook
from fakturownia_sync_airflow.provider import PACKAGE_NAME, field_behaviour
from sandbox.process import SandboxProcess
from tests.conftest import AIRFLOW, ROOT

FAKTUROWNIA_TOKEN = "fkProv1d3r-7c6b5a/sandbox"
SUGESTER_TOKEN = "sgProv1d3r-4d3c2b/sandbox"
WRONG_TOKEN = "wr0ngTok3n-0a9b8c"
PORTS = range(19600, 19700)  # this suite's own port range

HOOKS = {"fakturownia": FakturowniaHook, "sugester": SugesterHook}


def free_port(taken: set[int]) -> int:
    """A port of PORTS that nothing listens on now (and that this module has not handed out)."""
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


_TAKEN: set[int] = set()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(
        clients=5,
        invoices=5,
        crm_clients=5,
        fakturownia_port=free_port(_TAKEN),
        sugester_port=free_port(_TAKEN),
        fakturownia_token=FAKTUROWNIA_TOKEN,
        sugester_token=SUGESTER_TOKEN,
    ) as running:
        yield running


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def account_of(url: str) -> str:
    """The account name a base URL gives (host:port, see `fakturownia_sync.accounts`)."""
    return url.split("://", 1)[1].rstrip("/")


# Discovery -------------------------------------------------------------------------------------------


def test_airflow_lists_the_package_as_a_provider(airflow_env: dict[str, str]) -> None:
    listed = subprocess.run(
        [AIRFLOW, "providers", "list", "-o", "json"],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    providers = {entry["package_name"]: entry for entry in json.loads(listed.stdout)}
    assert PACKAGE_NAME in providers
    assert providers[PACKAGE_NAME]["version"] == "0.1.0"


def test_connection_types_name_their_hooks_and_are_testable() -> None:
    """Hooks as task code and `Connection.get_hook()` look them up (Airflow 3 keeps them in the SDK's manager)."""
    assert PACKAGE_NAME in ProvidersManager().providers
    hooks = ProvidersManagerTaskRuntime().hooks
    for conn_type, hook_class in HOOKS.items():
        info = hooks[conn_type]
        assert info is not None, conn_type
        assert info.hook_class_name == f"{hook_class.__module__}.{hook_class.__name__}"
        assert info.package_name == PACKAGE_NAME
        assert info.connection_id_attribute_name == hook_class.conn_name_attr
        assert info.hook_name == hook_class.hook_name
        assert info.connection_testable


def test_connection_forms_relabel_host_and_password_and_hide_the_rest() -> None:
    """What the UI's connection form is built from (`/ui/connections/hook_meta` serves the same)."""
    shown = {meta.connection_type: meta for meta in ProvidersManager().iter_connection_type_hook_ui_metadata()}
    for conn_type, hook_class in HOOKS.items():
        behaviour = shown[conn_type].field_behaviour
        assert behaviour is not None, conn_type
        assert behaviour["relabeling"] == {"host": "Account or base URL", "password": "API token"}
        assert set(behaviour["hidden_fields"]) == {"login", "schema", "port", "extra"}
        assert set(behaviour["placeholders"]) == {"host", "password"}
        assert hook_class.get_ui_field_behaviour() == field_behaviour(conn_type) == behaviour


def test_airflow_builds_the_hook_of_a_connection_by_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Connection.get_hook()` (what the Test button calls) passes the conn id by the hook's keyword."""
    from airflow.models import Connection

    for conn_type, hook_class in HOOKS.items():
        conn = Connection(conn_id=f"{conn_type}_eu", conn_type=conn_type, host="acme", password=WRONG_TOKEN)
        hook = conn.get_hook()
        assert type(hook) is hook_class
        assert hook.conn_id == f"{conn_type}_eu"


# test_connection against the sandbox -----------------------------------------------------------------


@pytest.mark.parametrize("conn_type", ["fakturownia", "sugester", "http"])
def test_good_token_passes_and_names_the_account(
    monkeypatch: pytest.MonkeyPatch, sandbox: SandboxProcess, conn_type: str
) -> None:
    """The provider's own types and `http` (AIRFLOW_CONN_* JSON) are read the same way."""
    set_connection(
        monkeypatch,
        "fakturownia_default",
        conn_type=conn_type,
        host=sandbox.fakturownia_url,
        password=FAKTUROWNIA_TOKEN,
    )
    set_connection(
        monkeypatch, "sugester_default", conn_type=conn_type, host=sandbox.sugester_url, password=SUGESTER_TOKEN
    )
    for hook, url, api in (
        (FakturowniaHook(), sandbox.fakturownia_url, "Fakturownia"),
        (SugesterHook(), sandbox.sugester_url, "Sugester"),
    ):
        ok, message = hook.test_connection()
        assert ok, message
        assert message == f"{api} account '{account_of(url)}' ({url.rstrip('/')}) accepted the API token."


def test_wrong_token_fails_naming_the_account_never_the_token(
    monkeypatch: pytest.MonkeyPatch, sandbox: SandboxProcess
) -> None:
    set_connection(
        monkeypatch, "fakturownia_default", conn_type="fakturownia", host=sandbox.fakturownia_url, password=WRONG_TOKEN
    )
    set_connection(
        monkeypatch, "sugester_default", conn_type="sugester", host=sandbox.sugester_url, password=WRONG_TOKEN
    )
    for hook, url, api in (
        (FakturowniaHook(), sandbox.fakturownia_url, "Fakturownia"),
        (SugesterHook(), sandbox.sugester_url, "Sugester"),
    ):
        ok, message = hook.test_connection()
        leaked = WRONG_TOKEN in message or WRONG_TOKEN[:8] in message
        assert not ok
        assert not leaked
        assert message.startswith(f"{api} rejected the API token for account '{account_of(url)}'")
        assert "HTTP 401" in message


def test_unreachable_account_and_missing_token_fail_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = free_port(_TAKEN)  # bound by nobody: the connection is refused
    set_connection(
        monkeypatch, "sugester_default", conn_type="sugester", host=f"http://127.0.0.1:{closed}", password=WRONG_TOKEN
    )
    started = time.monotonic()
    ok, message = SugesterHook().test_connection()
    assert not ok
    assert message.startswith(f"Could not use Sugester account '127.0.0.1:{closed}'")
    assert WRONG_TOKEN not in message
    assert time.monotonic() - started < 30  # the Test button gives up within seconds

    set_connection(monkeypatch, "fakturownia_default", conn_type="fakturownia", host="acme")
    ok, message = FakturowniaHook().test_connection()
    assert (ok, message) == (
        False,
        "the Fakturownia connection has no API token: put the Fakturownia API token in its password field.",
    )


# The REST API behind the UI's Test button --------------------------------------------------------------


@dataclass(frozen=True)
class ApiServer:
    base: str
    log: Path
    headers: dict[str, str] = field(repr=False)  # the login's JWT stays out of test reports

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.base}{path}", headers=self.headers, timeout=30)

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=60)


@pytest.fixture(scope="module")
def api_server(airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A real `airflow api-server` on the session's migrated AIRFLOW_HOME, connection testing enabled."""
    work = tmp_path_factory.mktemp("api_server")
    passwords = work / "passwords.json"
    password = "Pr0vider-admin-pass"
    passwords.write_text(json.dumps({"tester": password}))
    port = free_port(_TAKEN)
    env = {
        **airflow_env,
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "tester:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    }
    log_path = work / "api-server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"api-server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        login = requests.post(f"{base}/auth/token", json={"username": "tester", "password": password}, timeout=30)
        assert login.status_code == 201, login.text
        yield ApiServer(base, log_path, {"Authorization": f"Bearer {login.json()['access_token']}"})
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_ui_connection_form_metadata_comes_from_the_provider(api_server: ApiServer) -> None:
    answer = api_server.get("/ui/connections/hook_meta")
    assert answer.status_code == 200, answer.text
    forms = {entry["connection_type"]: entry for entry in answer.json()}
    for conn_type, hook_name in (("fakturownia", "Fakturownia.pl"), ("sugester", "Sugester CRM")):
        assert forms[conn_type]["hook_name"] == hook_name
        standard = forms[conn_type]["standard_fields"]
        assert (standard["host"]["title"], standard["host"]["hidden"]) == ("Account or base URL", False)
        assert (standard["password"]["title"], standard["password"]["hidden"]) == ("API token", False)
        assert standard["host"]["placeholder"].startswith(f"acme (for https://acme.{conn_type}.pl)")
        assert standard["login"]["hidden"] and standard["port"]["hidden"] and standard["url_schema"]["hidden"]


def test_rest_api_connection_test_reaches_the_sandbox(api_server: ApiServer, sandbox: SandboxProcess) -> None:
    def test(conn_type: str, url: str, token: str) -> dict:
        body = {"connection_id": f"{conn_type}_default", "conn_type": conn_type, "host": url, "password": token}
        answer = api_server.post("/api/v2/connections/test", body)
        assert answer.status_code == 200, answer.status_code
        return answer.json()

    good = test("fakturownia", sandbox.fakturownia_url, FAKTUROWNIA_TOKEN)
    assert good == {
        "status": True,
        "message": f"Fakturownia account '{account_of(sandbox.fakturownia_url)}' "
        f"({sandbox.fakturownia_url.rstrip('/')}) accepted the API token.",
    }
    assert test("sugester", sandbox.sugester_url, SUGESTER_TOKEN)["status"] is True

    bad = test("fakturownia", sandbox.fakturownia_url, WRONG_TOKEN)
    leaked = WRONG_TOKEN in json.dumps(bad) or WRONG_TOKEN in api_server.log.read_text()
    assert bad["status"] is False
    assert not leaked
    assert bad["message"].startswith("Fakturownia rejected the API token for account")


# Set-up of a local Airflow -----------------------------------------------------------------------------

SETUP_PROBE = """
import json, sys
from airflow.models import Connection
from airflow.utils.session import create_session
from scripts import airflow_setup
with create_session() as session:  # a user's own connection, made before the set-up ran
    # The copied session DB may hold connections an earlier test's set-up made: start from none.
    session.query(Connection).filter(Connection.conn_id.in_(["fakturownia_default", "sugester_default"])).delete()
    session.add(Connection(conn_id="sugester_default", conn_type="http", host="https://mine.sugester.pl"))
done = airflow_setup.ensure_connections(airflow_setup.sandbox_connections(json.loads(sys.argv[1])))
with create_session() as session:
    conns = {c.conn_id: [c.conn_type, c.host] for c in session.query(Connection)}
print(json.dumps({"done": done, "conns": conns}))
"""


def test_setup_creates_connections_of_the_providers_types_and_keeps_existing_ones(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "airflow_home"  # a throw-away copy of the session's migrated metadata DB
    home.mkdir()
    shutil.copy(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db", home / "airflow.db")
    sandbox = {
        "fakturownia_url": "http://127.0.0.1:19601",
        "sugester_url": "http://127.0.0.1:19602",
        "fakturownia_token": "t-f",
        "sugester_token": "t-s",
    }
    probe = subprocess.run(
        [sys.executable, "-c", SETUP_PROBE, json.dumps(sandbox)],
        env={**airflow_env, "AIRFLOW_HOME": str(home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["done"] == {"fakturownia_default": "created", "sugester_default": "kept"}
    assert found["conns"]["fakturownia_default"] == ["fakturownia", "http://127.0.0.1:19601"]
    assert found["conns"]["sugester_default"] == ["http", "https://mine.sugester.pl"]
