"""Copy the whole sync state from one database to another, e.g. from the default SQLite file to PostgreSQL.

Moving the state must not start it afresh: an empty state DB makes the next run rebuild its links from the
systems, which costs a scan and, for anything the systems do not carry an id for, loses what the state knew
(quarantine, review, conflicts, backfill ledger). So the copy is exact: both databases are brought to the
current schema, every table is copied in dependency order (claims before their keys) in batches, all in one
transaction on the target, identity sequences are moved past the copied ids, and the row counts are checked.
A target that already holds state is refused unless `force` is given (its rows are then replaced).
Pause the DAGs while copying: rows written to the source meanwhile are not copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import JSON, Connection, MetaData, Table, delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB

from fakturownia_sync.state.errors import StateDbError, safe_url
from fakturownia_sync.state.schema import metadata
from fakturownia_sync.state.store import StateStore

DEFAULT_BATCH = 1000


class StateCopyError(StateDbError):
    """The copy was refused (a non-empty target) or did not come out exact (row counts differ)."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    source_rows: int
    target_rows: int


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def _writable(table: Table) -> Table:
    """The table to insert into: a JSON column keeps SQL NULL as NULL (the schema's type writes JSON `null`)."""
    clone = table.to_metadata(MetaData())
    for column in clone.columns:
        if isinstance(column.type, JSON):
            column.type = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    return clone


def copy_state(
    source_url: str,
    target_url: str,
    *,
    force: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[str], None] = lambda _line: None,
) -> list[TableCopy]:
    """Copy every state table from `source_url` to `target_url`; returns the row counts of both sides."""
    if safe_url(source_url) == safe_url(target_url):
        raise StateCopyError(safe_url(target_url), "the source and the target of a state copy are the same database")
    source, target = StateStore.open(source_url), StateStore.open(target_url)
    try:
        tables = metadata.sorted_tables
        with target.engine.connect() as conn:
            filled = [table.name for table in tables if _count(conn, table)]
        if filled and not force:
            raise StateCopyError(
                target.safe_url,
                f"the state DB at {target.safe_url} already holds state ({', '.join(filled)}); "
                "copy into an empty database, or give --force to replace it",
            )
        with source.engine.connect() as src, target.engine.begin() as dst:
            for table in reversed(tables):
                dst.execute(delete(table))
            for table in tables:
                into = _writable(table)
                rows = src.execution_options(yield_per=batch_size).execute(
                    select(table).order_by(*table.primary_key.columns)
                )
                copied = 0
                for batch in rows.mappings().partitions(batch_size):
                    dst.execute(insert(into), [dict(row) for row in batch])
                    copied += len(batch)
                progress(f"{table.name}: {copied} rows")
            if dst.dialect.name == "postgresql":
                _move_sequences(dst, tables)
        with source.engine.connect() as src, target.engine.connect() as dst:
            counts = [TableCopy(table.name, _count(src, table), _count(dst, table)) for table in tables]
        wrong = [count for count in counts if count.source_rows != count.target_rows]
        if wrong:
            detail = ", ".join(f"{c.table} {c.source_rows} → {c.target_rows}" for c in wrong)
            raise StateCopyError(target.safe_url, f"the state copy to {target.safe_url} is not exact: {detail}")
        return counts
    finally:
        source.close()
        target.close()


def _move_sequences(conn: Connection, tables: list[Table]) -> None:
    """PostgreSQL hands out ids from a sequence that copied rows did not advance: set it past the copied ids."""
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f'COALESCE((SELECT MAX("{column.name}") FROM "{table.name}"), 0) + 1, false)'
            ),
            {"table": table.name, "column": column.name},
        )
