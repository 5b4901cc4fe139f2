"""Runs one invoices → deals sync in a process of its own, so that a test can SIGKILL it mid-run.

Usage: python -m tests.engine_runner '<json: fakturownia_url, fakturownia_token, sugester_url, sugester_token,
state_url, owner, optionally window: [first day, last day]>'
"""

from __future__ import annotations

import json
import sys
from datetime import date
from types import SimpleNamespace

from fakturownia_sync.connections import open_state_store
from tests.sync_harness import make_sync


def main() -> None:
    spec = json.loads(sys.argv[1])
    store = open_state_store(spec["state_url"])
    sync = make_sync(SimpleNamespace(**spec), store, owner=spec["owner"])
    if "window" in spec:  # a backfill window instead of the incremental sweep
        first, last = (date.fromisoformat(day) for day in spec["window"])
        sync.run_window(first, last)
    else:
        sync.run()


if __name__ == "__main__":
    main()
