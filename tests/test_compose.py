"""docker-compose.yaml cannot be started here (no Docker engine), so check what can be checked."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
AIRFLOW_SERVICES = [
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
]


def test_airflow_services_share_image_secret_and_project() -> None:
    services = COMPOSE["services"]
    secrets = {services[name]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for name in AIRFLOW_SERVICES}
    assert len(secrets) == 1
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/project/dags"
        assert "PYTHONPATH" not in env  # the project is installed into the image
    commands = {
        services[name]["command"] if isinstance(services[name]["command"], str) else "init" for name in AIRFLOW_SERVICES
    }
    assert {"api-server", "scheduler", "dag-processor", "triggerer"} <= commands


def test_mounted_paths_exist() -> None:
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} is mounted but missing"


def test_image_builds_from_airflow_3_3_with_the_project_installed() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert dockerfile.splitlines()[1] == "FROM apache/airflow:3.3.2-python3.11"
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            source = line.split()[-2]
            assert (ROOT / source).exists(), f"{source} is copied into the image but missing"
    assert "pip install" in dockerfile and "/opt/project" in dockerfile


def test_connections_use_the_contract_names() -> None:
    env = COMPOSE["services"]["airflow-scheduler"]["environment"]
    for conn_id in ("FAKTUROWNIA_DEFAULT", "SUGESTER_DEFAULT", "FAKTUROWNIA_SYNC_DB"):
        assert f"AIRFLOW_CONN_{conn_id}" in env
    state = json.loads(env["AIRFLOW_CONN_FAKTUROWNIA_SYNC_DB"])
    assert state["extra"]["url"].startswith("postgresql+psycopg://")


def test_sandbox_service_runs_the_sandbox_module() -> None:
    sandbox = COMPOSE["services"]["sandbox"]
    assert sandbox["command"][:3] == ["python", "-m", "sandbox"]
    assert (ROOT / "sandbox" / "__main__.py").exists()
    assert sandbox["profiles"] == ["sandbox"]


def test_init_job_creates_the_pools_the_dags_use() -> None:
    init = " ".join(COMPOSE["services"]["airflow-init"]["command"])
    dag_sources = "".join(path.read_text() for path in (ROOT / "dags").glob("*.py"))
    for pool in ("sugester_api", "fakturownia_api"):
        assert f"airflow pools set {pool}" in init
    for pool in ("sugester_api", "fakturownia_api"):
        assert f'pool="{pool}"' in dag_sources
