"""Runs one invoices → deals sync in a process of its own, so that a test can SIGKILL it mid-run.

Usage: python -m tests.engine_runner '<json: fakturownia_url, fakturownia_token, sugester_url, sugester_token,
state_url, owner, optionally window: [first day, last day], optionally mode: "clients" (the two-way client
sync instead), optionally start_at: a Unix time to wait for (so racing processes start together)>'
The run's summary is printed to stdout as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from types import SimpleNamespace

from fakturownia_sync.connections import open_state_store
from tests.clients_harness import make_clients_sync
from tests.sync_harness import make_sync


def main() -> None:
    spec = json.loads(sys.argv[1])
    store = open_state_store(spec["state_url"])
    time.sleep(max(0.0, float(spec.get("start_at", 0)) - time.time()))
    if spec.get("mode") == "clients":
        summary = make_clients_sync(SimpleNamespace(**spec), store, owner=spec["owner"]).run()
        print(json.dumps(summary, default=str), flush=True)
        return
    sync = make_sync(SimpleNamespace(**spec), store, owner=spec["owner"])
    if "window" in spec:  # a backfill window instead of the incremental sweep
        first, last = (date.fromisoformat(day) for day in spec["window"])
        summary = sync.run_window(first, last)
    else:
        summary = sync.run()
    print(json.dumps(summary, default=str), flush=True)


if __name__ == "__main__":
    main()
