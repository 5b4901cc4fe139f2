"""Copy the sync state between databases, e.g. from the default SQLite file to PostgreSQL (`make state-copy`).

    .venv/bin/python -m scripts.state_copy --from sqlite:///path/fakturownia_sync_state.db \
        --to postgresql+psycopg://user:password@host/db [--force] [--batch-size 1000]

Migrates both databases to the current schema, refuses a target that already holds state unless `--force`,
copies every table in dependency order in batches and prints the row counts of both sides. Pause the DAGs
first, then point the `fakturownia_sync_db` connection at the target. Passwords are never printed.
"""

from __future__ import annotations

import argparse
import sys

from fakturownia_sync.state.copy import DEFAULT_BATCH, copy_state
from fakturownia_sync.state.errors import StateDbError, safe_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.state_copy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", required=True, help="SQLAlchemy URL of the state to copy")
    parser.add_argument("--to", dest="target", required=True, help="SQLAlchemy URL of the database to fill")
    parser.add_argument("--force", action="store_true", help="replace the state a non-empty target holds")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="rows per insert (default 1000)")
    args = parser.parse_args(argv)
    print(f"copying the state from {safe_url(args.source)} to {safe_url(args.target)}")
    try:
        counts = copy_state(args.source, args.target, force=args.force, batch_size=max(1, args.batch_size))
    except StateDbError as exc:
        print(f"state copy failed: {exc}", file=sys.stderr)
        return 1
    width = max(len(count.table) for count in counts)
    for count in counts:
        print(f"  {count.table:<{width}}  {count.source_rows:>9} → {count.target_rows:>9}")
    print(f"done: {sum(count.target_rows for count in counts)} rows in {len(counts)} tables, counts equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
