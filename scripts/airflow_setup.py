"""Prepare a local Airflow (SQLite) for the sync DAGs: migrate the metadata DB, then put the connections,
the config Variable and the API pools in place, so the DAGs run from the UI with nothing left to click.

Only what is missing is created: a connection, the Variable or a pool that exists already (edited in the
UI, say) is left exactly as it is, so running `make airflow` / `make demo` again never loses a user's edits.

Run with AIRFLOW_HOME set (the Makefile does): `python -m scripts.airflow_setup --sandbox .demo/sandbox.json`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fakturownia_sync_airflow.provider import FAKTUROWNIA_CONN_TYPE, SUGESTER_CONN_TYPE
from sandbox.demo_config import DEMO_CONFIG

VARIABLE = "fakturownia_sync_config"

# Each API-calling task holds one slot of the pool of the API it writes most, so slots bound how many
# processes call that API at once across all workers; each process keeps to `requests_per_minute`.
POOLS = {
    "sugester_api": (4, "Tasks writing to the CRM (invoices→deals, backfill windows)"),
    "fakturownia_api": (2, "Tasks writing to Fakturownia (two-way client sync, deals→invoices)"),
}


def sandbox_connections(sandbox: dict[str, Any]) -> dict[str, tuple[str, str, str, str]]:
    """conn_id → (connection type, host URL, token, description) for the sandbox described by `sandbox` (demo's
    sandbox.json). The types are the provider's own, so the UI shows their forms and their Test button."""
    return {
        "fakturownia_default": (
            FAKTUROWNIA_CONN_TYPE,
            sandbox["fakturownia_url"],
            sandbox["fakturownia_token"],
            "Fakturownia (sandbox)",
        ),
        "sugester_default": (
            SUGESTER_CONN_TYPE,
            sandbox["sugester_url"],
            sandbox["sugester_token"],
            "Sugester CRM (sandbox)",
        ),
    }


def ensure_connections(connections: dict[str, tuple[str, str, str, str]]) -> dict[str, str]:
    """Add each connection that does not exist; returns conn_id → "created" or "kept".

    One that exists is kept as it is, whatever its type (an older `http` one keeps working).
    """
    from airflow.models import Connection
    from airflow.utils.session import create_session

    done: dict[str, str] = {}
    with create_session() as session:
        for conn_id, (conn_type, url, token, description) in connections.items():
            if session.query(Connection).filter(Connection.conn_id == conn_id).first() is not None:
                done[conn_id] = "kept"
                continue
            session.add(
                Connection(conn_id=conn_id, conn_type=conn_type, host=url, password=token, description=description)
            )
            done[conn_id] = "created"
    return done


def ensure_variable(key: str = VARIABLE, value: dict[str, Any] | None = None) -> str:
    """Set the config Variable only when it does not exist; "created" or "kept"."""
    from airflow.models import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.query(Variable).filter(Variable.key == key).first() is not None:
            return "kept"
    Variable.set(key, json.dumps(DEMO_CONFIG if value is None else value, indent=2))
    return "created"


def ensure_pools(pools: dict[str, tuple[int, str]] = POOLS) -> dict[str, str]:
    """Create each missing pool; an existing one keeps its slots and description (never shrunk, never reset)."""
    from airflow.models import Pool
    from airflow.utils.session import create_session

    done: dict[str, str] = {}
    for name, (slots, description) in pools.items():
        with create_session() as session:
            exists = session.query(Pool).filter(Pool.pool == name).first() is not None
        if exists:
            done[name] = "kept"
        else:
            Pool.create_or_update_pool(name, slots, description, include_deferred=False)
            done[name] = "created"
    return done


def prepare(sandbox: dict[str, Any], *, migrate: bool = True) -> dict[str, Any]:
    """Migrate the metadata DB (unless told not to), then create what is missing; returns what was done."""
    if migrate:
        from airflow.utils.db import upgradedb

        upgradedb()
    return {
        "connections": ensure_connections(sandbox_connections(sandbox)),
        "variable": ensure_variable(),
        "pools": ensure_pools(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sandbox", type=Path, required=True, help="JSON file with the sandbox URLs and tokens")
    args = parser.parse_args()
    done = prepare(json.loads(args.sandbox.read_text()))
    parts = [f"{name} {state}" for group in (done["connections"], done["pools"]) for name, state in group.items()]
    parts.insert(len(done["connections"]), f"Variable {VARIABLE} {done['variable']}")
    print(f"Airflow ready ({'; '.join(parts)}); existing entries are never changed.")


if __name__ == "__main__":
    main()
