"""docker-compose.yaml cannot be started here (no Docker engine), so everything that can be checked without one
is: the file against the Compose Specification's JSON schema (vendored in tests/data, see its README), the
topology `make scale` proves with real processes (shared secrets, execution API URL, LocalExecutor by default,
Celery with Redis and two workers as a profile), health checks, the logs volume, the sandbox profile, and that
every file, build target, Airflow option, connection and variable the file names exists."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
SCHEMA_PATH = ROOT / "tests" / "data" / "compose-spec.json"
AIRFLOW_IMAGE = "fakturownia-crm-sync:latest"
AIRFLOW_SERVICES = [name for name, service in SERVICES.items() if service.get("image") == AIRFLOW_IMAGE]
SHARED = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)
# Variables read by the images themselves, not by Airflow or this project: the image that reads each.
IMAGE_VARIABLES = {
    "POSTGRES_USER": "postgres",
    "POSTGRES_PASSWORD": "postgres",
    "POSTGRES_DB": "postgres",
    "DUMB_INIT_SETSID": "apache/airflow (its entrypoint's dumb-init)",
}


def header() -> str:
    return "".join(line for line in COMPOSE_TEXT.splitlines(keepends=True) if line.startswith("#"))


def one_shot(name: str) -> bool:
    """A job that runs to completion: never restarted, and every service that waits for it waits for that."""
    waits = [
        service["depends_on"][name]["condition"]
        for service in SERVICES.values()
        if isinstance(service.get("depends_on"), dict) and name in service["depends_on"]
    ]
    return SERVICES[name].get("restart") == "no" and all(c == "service_completed_successfully" for c in waits)


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def test_the_file_is_valid_against_the_compose_specification() -> None:
    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    assert digest in (ROOT / "tests" / "data" / "README.md").read_text()  # the vendored schema is the one noted
    assert (ROOT / "tests" / "data" / "LICENSE.compose-spec").exists()
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    assert [error.message for error in validator.iter_errors(COMPOSE)] == []
    # and the validator does catch a mistake of the kind a hand edit makes
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["airflow-scheduler"]["healthcheck"]["intervall"] = "30s"
    assert any("intervall" in error.message for error in validator.iter_errors(broken))


def test_image_builds_from_airflow_3_3_2_with_the_project_and_the_proven_celery_pins() -> None:
    stages = dict(re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE, flags=re.MULTILINE))  # base -> stage
    assert stages["apache/airflow:3.3.2-python3.11"] == "airflow"
    assert stages["airflow"] == "sandbox"  # the sandbox stage builds on the project's image
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M))
    for package in ("celery", "apache-airflow-providers-celery", "apache-airflow"):
        assert f'"{package}=={pins[package]}"' in DOCKERFILE, package  # what make scale ran on
    assert "/opt/project\n" in DOCKERFILE.split("RUN pip install", 1)[1]  # the project itself is installed
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY"):
            source = line.split()[-2]
            assert (ROOT / source).exists(), f"{source} is copied into the image but missing"


def test_build_contexts_dockerfiles_targets_and_mounted_paths_exist() -> None:
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, flags=re.MULTILINE))
    built = [service["build"] for service in SERVICES.values() if "build" in service]
    assert built
    for build in built:
        assert (ROOT / build["context"]).is_dir()
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
        assert build["target"] in targets
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
            else:
                assert source in COMPOSE["volumes"], f"{name} mounts the undeclared volume {source}"


def test_airflow_services_share_secrets_and_the_execution_api_url() -> None:
    assert {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"} <= set(AIRFLOW_SERVICES)
    assert {"airflow-triggerer", "airflow-worker-1", "airflow-worker-2"} <= set(AIRFLOW_SERVICES)
    for key in SHARED:
        values = {SERVICES[name]["environment"][key] for name in AIRFLOW_SERVICES}
        assert len(values) == 1, key
    for key in SHARED[:3]:  # secrets come from .env, required: compose refuses to start without them
        assert re.fullmatch(r"\$\{AIRFLOW_[A-Z_]+:\?.+\}", SERVICES["airflow-scheduler"]["environment"][key])
    # the execution API URL names the api-server's service and the port it listens on
    url = SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert url == "http://airflow-apiserver:8080/execution/"
    assert "8080:8080" in SERVICES["airflow-apiserver"]["ports"]
    commands = {command_text(SERVICES[name]) for name in AIRFLOW_SERVICES}
    assert {"api-server", "scheduler", "dag-processor", "triggerer"} <= commands
    for name in AIRFLOW_SERVICES:
        assert "PYTHONPATH" not in SERVICES[name]["environment"]  # the project is installed into the image


def test_local_executor_by_default_and_celery_by_an_env_override_with_its_profile() -> None:
    executor = SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
    assert executor == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert "AIRFLOW_EXECUTOR=CeleryExecutor docker compose --profile celery up" in header()
    celery = {name for name, service in SERVICES.items() if "celery" in service.get("profiles", [])}
    workers = sorted(name for name in celery if command_text(SERVICES[name]).startswith("celery worker"))
    assert celery == {"redis", *workers} and len(workers) == 2
    names = set()
    for name in workers:
        args = shlex.split(command_text(SERVICES[name]))
        assert args[args.index("-q") + 1] == "default" and args[args.index("-c") + 1] == "2"
        names.add(args[args.index("-H") + 1])
        assert SERVICES[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert len(names) == 2  # each worker its own name
    broker = SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__CELERY__BROKER_URL"]
    assert broker.startswith("redis://redis:6379/")
    # the scheduler waits for Redis when the profile runs it, and starts without it otherwise
    assert SERVICES["airflow-scheduler"]["depends_on"]["redis"] == {"condition": "service_healthy", "required": False}
    # only the Celery services are outside the default profile, apart from the sandbox's
    optional = {name for name, service in SERVICES.items() if service.get("profiles")}
    assert optional == celery | {"sandbox", "sandbox-connections"}


def test_every_long_running_service_has_a_health_check_and_the_logs_volume_is_shared() -> None:
    for name, service in SERVICES.items():
        if one_shot(name):
            continue
        check = service.get("healthcheck", {}).get("test")
        assert check and check[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
    assert one_shot("airflow-init") and one_shot("sandbox-connections")
    assert "airflow-logs" in COMPOSE["volumes"]
    for name in AIRFLOW_SERVICES:
        assert "airflow-logs:/opt/airflow/logs" in SERVICES[name]["volumes"], name
    # the scheduler's health check asks the health server the environment switches on, on its default port
    assert SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    from airflow.configuration import conf

    port = conf.get("scheduler", "scheduler_health_check_server_port")
    assert f"http://localhost:{port}/health" in SERVICES["airflow-scheduler"]["healthcheck"]["test"]


def test_connections_point_at_the_sandbox_only_in_its_profile() -> None:
    from sandbox.config import DEFAULT_FAKTUROWNIA_TOKEN, DEFAULT_SUGESTER_TOKEN, SandboxConfig
    from sandbox.demo_config import DEMO_CONFIG

    for name, service in SERVICES.items():
        if "sandbox" in service.get("profiles", []):
            continue
        text = json.dumps(service)
        assert "sandbox:" not in text and "http://sandbox" not in text, f"{name} points at the sandbox"
        assert not any(key.startswith(("AIRFLOW_CONN_FAKTUROWNIA_DEFAULT", "AIRFLOW_CONN_SUGESTER_DEFAULT")) for key in
                       service.get("environment", {}))  # fmt: skip
    sandbox = SERVICES["sandbox"]
    assert sandbox["profiles"] == ["sandbox"] and sandbox["entrypoint"] == ["python", "-m", "sandbox"]
    assert (ROOT / "sandbox" / "__main__.py").exists()
    args = sandbox["command"]
    ports = {args[args.index("--fakturownia-port") + 1], args[args.index("--sugester-port") + 1]}
    assert ports == {str(SandboxConfig().fakturownia_port), str(SandboxConfig().sugester_port)}
    setup = command_text(SERVICES["sandbox-connections"])
    assert SERVICES["sandbox-connections"]["profiles"] == ["sandbox"]
    assert SERVICES["sandbox-connections"]["depends_on"]["sandbox"]["condition"] == "service_healthy"
    conns = dict(re.findall(r"airflow connections add (\w+)\s+--conn-json '([^']+)'", setup))
    assert json.loads(conns["fakturownia_default"]) == {
        "conn_type": "http",
        "host": f"http://sandbox:{SandboxConfig().fakturownia_port}",
        "password": DEFAULT_FAKTUROWNIA_TOKEN,
    }
    assert json.loads(conns["sugester_default"]) == {
        "conn_type": "http",
        "host": f"http://sandbox:{SandboxConfig().sugester_port}",
        "password": DEFAULT_SUGESTER_TOKEN,
    }
    [variable] = re.findall(r"airflow variables set fakturownia_sync_config\s+'([^']+)'", setup)
    assert json.loads(variable) == DEMO_CONFIG  # the demo's config, which fits the sandbox's seed


def test_every_variable_the_file_names_exists() -> None:
    """Each AIRFLOW__SECTION__KEY is an option of Airflow or of an installed provider; each connection and
    Variable is one the code reads; each ${VAR} the file reads is explained in its header; anything else is
    read by an image, as listed here."""
    from airflow.configuration import conf

    from fakturownia_sync.config import VARIABLE_NAME
    from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook, SyncStateHook

    options = conf.configuration_description
    conn_ids = {hook.default_conn_name for hook in (FakturowniaHook, SugesterHook, SyncStateHook)}
    names: set[str] = set()
    for service in SERVICES.values():
        names |= set(service.get("environment", {}))
    for name in sorted(names):
        if name.startswith("AIRFLOW__"):
            section, key = name.removeprefix("AIRFLOW__").lower().split("__", 1)
            assert key in options.get(section, {}).get("options", {}), f"{name} is no Airflow option"
        elif name.startswith("AIRFLOW_CONN_"):
            assert name.removeprefix("AIRFLOW_CONN_").lower() in conn_ids, name
        elif name.startswith("AIRFLOW_VAR_"):
            assert name.removeprefix("AIRFLOW_VAR_").lower() == VARIABLE_NAME, name
        else:
            assert name in IMAGE_VARIABLES, f"{name} is read by nothing this test knows of"
    for variable in sorted(set(re.findall(r"(?<!\$)\$\{([A-Z_]+)[:}]", COMPOSE_TEXT))):  # $${X}: the container's
        assert variable in header(), f"${{{variable}}} is read but not explained at the top of the file"
    for hook in (FakturowniaHook, SugesterHook):
        assert f'"{hook.hook_name}"' in header()  # the connection types the header tells users to pick
    # the state DB's connection names the database the Postgres init script creates
    state = json.loads(SERVICES["airflow-scheduler"]["environment"]["AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB"])
    database = state["extra"]["url"].rsplit("/", 1)[1]
    assert state["extra"]["url"].startswith("postgresql+psycopg://")
    assert f"CREATE DATABASE {database} " in (ROOT / "docker" / "create-sync-db.sql").read_text()


@pytest.mark.parametrize("pool", ["sugester_api", "fakturownia_api"])
def test_init_job_creates_the_pools_the_dags_use_with_the_set_up_slots(pool: str) -> None:
    from scripts.airflow_setup import POOLS

    init = command_text(SERVICES["airflow-init"])
    assert f"airflow pools set {pool} {POOLS[pool][0]} " in init
    dag_sources = "".join(path.read_text() for path in (ROOT / "dags").glob("*.py"))
    assert f'pool="{pool}"' in dag_sources
