"""Linked client pairs and what the two-way client sync keeps about them.

The one-to-one links (unique on both sides), the last synced field values of each pair (snapshots, the
base of the three-way field merge), the mirror of every Fakturownia client read so far, the settled field
conflicts, and the review list a person works through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fakturownia_sync.state.engine import StoreEngine, utcnow
from fakturownia_sync.state.schema import client_conflicts, client_links, client_review, fakturownia_client_mirror


def review_evidence(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a review finding rests on, to tell "the same finding again" from a new one: its reason, the two
    records it names, and the candidates or look-alikes it lists. Messages and record contents may change
    (a phone edited) without making it another finding."""
    suggestions = entry.get("suggestions") or []
    listed = sorted({(str(s.get("side")), int(s["id"])) for s in suggestions if s.get("id") is not None})
    f_id, c_id = entry.get("fakturownia_client_id"), entry.get("crm_client_id")
    return (
        entry.get("reason"),
        None if f_id is None else int(f_id),
        None if c_id is None else int(c_id),
        tuple(listed),
    )


@dataclass(frozen=True)
class ClientLink:
    fakturownia_client_id: int
    crm_client_id: int
    evidence: str
    snapshot: dict[str, Any] | None


class ClientLinksStore(StoreEngine):
    # Client links --------------------------------------------------------------------------------------

    def client_link(self, fakturownia_client_id: int) -> ClientLink | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(client_links).where(client_links.c.fakturownia_client_id == int(fakturownia_client_id))
            ).first()
        if not row:
            return None
        m = row._mapping
        return ClientLink(m["fakturownia_client_id"], m["crm_client_id"], m["evidence"], m["snapshot"])

    def client_link_of_crm(self, crm_client_id: int) -> ClientLink | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(client_links).where(client_links.c.crm_client_id == int(crm_client_id))).first()
        if not row:
            return None
        m = row._mapping
        return ClientLink(m["fakturownia_client_id"], m["crm_client_id"], m["evidence"], m["snapshot"])

    def crm_client_is_linked(self, crm_client_id: int) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(client_links.c.id).where(client_links.c.crm_client_id == int(crm_client_id))
                ).first()
                is not None
            )

    def link_clients(
        self, fakturownia_client_id: int, crm_client_id: int, evidence: str, snapshot: dict[str, Any] | None = None
    ) -> bool:
        """Link two clients; False when either side is already linked (the one-to-one rule held)."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(client_links).values(
                        fakturownia_client_id=fakturownia_client_id,
                        crm_client_id=crm_client_id,
                        evidence=evidence,
                        snapshot=snapshot,
                        created_at=now,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            return False

    def all_client_links(self) -> list[ClientLink]:
        """Every link, for the two-way client sync, which matches whole client bases at once."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(client_links).order_by(client_links.c.id))
            return [
                ClientLink(m["fakturownia_client_id"], m["crm_client_id"], m["evidence"], m["snapshot"])
                for m in (row._mapping for row in rows)
            ]

    def set_client_snapshots(self, snapshots: dict[int, dict[str, Any]]) -> None:
        """Store the last synced field values of linked pairs (keyed by Fakturownia client id)."""
        if not snapshots:
            return
        now = utcnow()
        statement = (
            update(client_links)
            .where(client_links.c.fakturownia_client_id == bindparam("fid"))
            .values(snapshot=bindparam("snap"), updated_at=now)
        )
        rows = [{"fid": int(fid), "snap": snap} for fid, snap in snapshots.items()]
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 1000):
                conn.execute(statement, rows[start : start + 1000])

    def link_clients_many(self, links: list[tuple[int, int, str, dict[str, Any] | None]]) -> list[tuple[int, int]]:
        """Link many pairs (Fakturownia id, CRM id, evidence, snapshot) in one transaction; falls back to
        one at a time when a pair breaks the one-to-one rule (a concurrent run linked it). Returns the
        pairs that were linked."""
        if not links:
            return []
        now = utcnow()
        rows = [
            {
                "fakturownia_client_id": int(f),
                "crm_client_id": int(c),
                "evidence": evidence,
                "snapshot": snapshot,
                "created_at": now,
                "updated_at": now,
            }
            for f, c, evidence, snapshot in links
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(client_links), rows)
            return [(int(f), int(c)) for f, c, _e, _s in links]
        except IntegrityError:
            return [(int(f), int(c)) for f, c, e, snap in links if self.link_clients(int(f), int(c), e, snap)]

    # Fakturownia client mirror ------------------------------------------------------------------------

    def fakturownia_clients(self) -> list[dict[str, Any]]:
        """Every Fakturownia client record the client sync has read (its last version)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(fakturownia_client_mirror.c.record).order_by(fakturownia_client_mirror.c.client_id)
            )
            return [row.record for row in rows]

    def save_fakturownia_clients(
        self, records: Iterable[tuple[dict[str, Any], datetime | None]], *, replace_all: bool = False
    ) -> None:
        """Store the given (record, updated_at) pairs; `replace_all` first forgets every other client
        (a full read saw the whole base, so a client missing from it was deleted in Fakturownia).

        Two overlapping runs may store the same new client at once: the chunk whose insert meets the other's row
        is written row by row instead, each updating the row that is there (either version is a true one)."""
        table, now = fakturownia_client_mirror, utcnow()
        rows = [
            {"client_id": int(record["id"]), "updated_at": updated, "record": record, "seen_at": now}
            for record, updated in records
        ]
        with self.engine.begin() as conn:
            if replace_all:
                conn.execute(delete(table))
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                if not replace_all:
                    conn.execute(delete(table).where(table.c.client_id.in_([row["client_id"] for row in chunk])))
                try:
                    with conn.begin_nested():
                        conn.execute(insert(table), chunk)
                except IntegrityError:
                    for row in chunk:
                        change = update(table).where(table.c.client_id == row["client_id"]).values(**row)
                        if not conn.execute(change).rowcount:
                            conn.execute(insert(table).values(**row))

    def forget_fakturownia_clients(self, client_ids: Iterable[int]) -> None:
        """Drop clients from the mirror that Fakturownia answered 404 for (deleted there): an incremental sweep
        never sees a deletion, so nothing may be decided on them any more."""
        ids = [int(i) for i in client_ids]
        if ids:
            with self.engine.begin() as conn:
                conn.execute(delete(fakturownia_client_mirror).where(fakturownia_client_mirror.c.client_id.in_(ids)))

    # Client review list --------------------------------------------------------------------------------

    def sync_client_review(
        self, entries: Iterable[dict[str, Any]], ignored: Mapping[str, datetime] | None = None
    ) -> tuple[int, int]:
        """Make the open review list exactly `entries` (dicts with the `client_review` columns, keyed by
        `subject`): new ones are opened, known ones refreshed, open ones not given any more are resolved
        (a later run found the data fixed). Returns (opened, resolved).

        `ignored` names the subjects a person chose to ignore, with when that was applied: an entry ignored
        after it was last seen stays resolved, and is not refreshed, while the finding is the same evidence
        (`review_evidence`); a different finding opens it again, and that ignore no longer holds."""
        table, now = client_review, utcnow()
        wanted = {entry["subject"]: entry for entry in entries}
        with self.engine.begin() as conn:
            if ignored:
                stored = conn.execute(select(table).where(table.c.subject.in_([s for s in ignored if s in wanted])))
                for row in (dict(row._mapping) for row in stored):
                    subject = row["subject"]
                    if ignored[subject] >= row["last_seen_at"] and review_evidence(row) == review_evidence(
                        wanted[subject]
                    ):
                        del wanted[subject]
                        if row["resolved_at"] is None:
                            conn.execute(update(table).where(table.c.subject == subject).values(resolved_at=now))
            known = {row.subject: row.resolved_at for row in conn.execute(select(table.c.subject, table.c.resolved_at))}
            fresh = [
                {**entry, "first_seen_at": now, "last_seen_at": now, "resolved_at": None}
                for subject, entry in wanted.items()
                if subject not in known
            ]
            reopened = sum(1 for subject in wanted if subject in known and known[subject] is not None)
            refresh = [
                {**{f"v_{k}": v for k, v in entry.items()}, "v_now": now}
                for subject, entry in wanted.items()
                if subject in known
            ]
            if refresh:
                columns = [k for k in next(iter(wanted.values())) if k != "subject"]
                statement = (
                    update(table)
                    .where(table.c.subject == bindparam("v_subject"))
                    .values(
                        **{k: bindparam(f"v_{k}") for k in columns}, last_seen_at=bindparam("v_now"), resolved_at=None
                    )
                )
                for start in range(0, len(refresh), 1000):
                    conn.execute(statement, refresh[start : start + 1000])
            for start in range(0, len(fresh), 1000):
                conn.execute(insert(table), fresh[start : start + 1000])
            gone = [subject for subject, resolved in known.items() if resolved is None and subject not in wanted]
            for start in range(0, len(gone), 1000):
                conn.execute(
                    update(table).where(table.c.subject.in_(gone[start : start + 1000])).values(resolved_at=now)
                )
        return len(fresh) + reopened, len(gone)

    def resolve_client_review(self, subject: str) -> bool:
        """Resolve one open entry (a person's decision on it was applied); False when none was open."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(client_review)
                .where(client_review.c.subject == subject, client_review.c.resolved_at.is_(None))
                .values(resolved_at=utcnow())
            )
            return done.rowcount == 1

    def client_review_entry(self, subject: str) -> dict[str, Any] | None:
        """The review entry of one subject, open or resolved."""
        with self.engine.connect() as conn:
            row = conn.execute(select(client_review).where(client_review.c.subject == subject)).first()
            return dict(row._mapping) if row else None

    def open_client_review(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(client_review).where(client_review.c.resolved_at.is_(None)).order_by(client_review.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def open_client_review_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(client_review.c.reason, func.count())
                .where(client_review.c.resolved_at.is_(None))
                .group_by(client_review.c.reason)
            )
            return {reason: int(count) for reason, count in sorted(rows)}

    # Client conflicts ----------------------------------------------------------------------------------

    def record_client_conflicts(self, conflicts: list[dict[str, Any]]) -> None:
        """Append settled field conflicts (dicts with the `client_conflicts` columns)."""
        if conflicts:
            now = utcnow()
            with self.engine.begin() as conn:
                conn.execute(insert(client_conflicts), [{**row, "detected_at": now} for row in conflicts])

    def client_conflicts(self, fakturownia_client_id: int | None = None) -> list[dict[str, Any]]:
        query = select(client_conflicts).order_by(client_conflicts.c.id)
        if fakturownia_client_id is not None:
            query = query.where(client_conflicts.c.fakturownia_client_id == int(fakturownia_client_id))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]
