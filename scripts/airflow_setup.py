"""Prepare a local Airflow (SQLite) for the sync DAGs: migrate the metadata DB, then put the connections,
the config Variable and the API pools in place, so the DAGs run from the UI with nothing left to click.

Run with AIRFLOW_HOME set (the Makefile does): `python -m scripts.airflow_setup --sandbox .demo/sandbox.json`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sandbox.demo_config import DEMO_CONFIG

# Each API-calling task holds one slot of the pool of the API it writes most, so slots bound how many
# processes call that API at once across all workers; each process keeps to `requests_per_minute`.
POOLS = {
    "sugester_api": (4, "Tasks writing to the CRM (invoices→deals, backfill windows)"),
    "fakturownia_api": (2, "Tasks writing to Fakturownia (two-way client sync)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sandbox", type=Path, required=True, help="JSON file with the sandbox URLs and tokens")
    args = parser.parse_args()
    sandbox = json.loads(args.sandbox.read_text())

    from airflow.models import Connection, Pool, Variable
    from airflow.utils.db import upgradedb
    from airflow.utils.session import create_session

    upgradedb()
    connections = {
        "fakturownia_default": (sandbox["fakturownia_url"], sandbox["fakturownia_token"], "Fakturownia (sandbox)"),
        "sugester_default": (sandbox["sugester_url"], sandbox["sugester_token"], "Sugester CRM (sandbox)"),
    }
    with create_session() as session:
        for conn_id, (url, token, description) in connections.items():
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            session.add(
                Connection(conn_id=conn_id, conn_type="http", host=url, password=token, description=description)
            )
    Variable.set("fakturownia_sync_config", json.dumps(DEMO_CONFIG, indent=2))
    for name, (slots, description) in POOLS.items():
        Pool.create_or_update_pool(name, slots, description, include_deferred=False)
    print(
        "Airflow ready: connections fakturownia_default, sugester_default, Variable fakturownia_sync_config, "
        f"pools {', '.join(POOLS)}."
    )


if __name__ == "__main__":
    main()
