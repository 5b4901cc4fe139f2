"""Decisions a person made on the client review list, kept for good: the queue the client sync applies, and
the audit list the UI shows (who decided what, when, and what the sync then did with it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, String, func, insert, literal, not_, select, update

from fakturownia_sync.state.engine import StoreEngine, clip_name, utcnow
from fakturownia_sync.state.schema import UtcDateTime, client_review, review_decisions

# link: the two records are one company, link them; different: two companies, create each on the other side
# (the resemblance no longer holds either back); ignore: stop showing this entry, change nothing.
REVIEW_DECISIONS = ("link", "different", "ignore")
# The decisions about a pair: they name a Fakturownia client and a CRM client, or cannot be applied.
PAIR_DECISIONS = frozenset({"link", "different"})
SUPERSEDED = "Superseded by decision #"  # how the outcome of a decision replaced before it was applied begins
ANY_WAITING = object()  # record_review_decision without a check of what was waiting on the entry


class ReviewDecisionsStore(StoreEngine):
    def record_review_decision(
        self,
        subject: str,
        decision: str,
        decided_by: str,
        fakturownia_client_id: int | None = None,
        crm_client_id: int | None = None,
        replacing: int | object | None = ANY_WAITING,
    ) -> int | None:
        """Store a decision for the next client sync to apply; returns its id. An unknown decision raises.

        `replacing`: the newest waiting decision on this subject the person saw (None: none). The decision is
        stored only if that is still the newest waiting one, checked in the insert itself, so of two people
        deciding at the same moment on what they both saw, one is stored and the other gets None."""
        if decision not in REVIEW_DECISIONS:
            raise ValueError(f"unknown review decision {decision!r}; expected one of {', '.join(REVIEW_DECISIONS)}")
        if not decided_by:
            raise ValueError("a review decision needs the name of who made it")
        table = review_decisions
        row = {
            "subject": literal(subject, String()),
            "decision": literal(decision, String()),
            "fakturownia_client_id": literal(fakturownia_client_id, BigInteger()),
            "crm_client_id": literal(crm_client_id, BigInteger()),
            "decided_by": literal(clip_name(decided_by), String()),
            "decided_at": literal(utcnow(), UtcDateTime()),
        }
        chosen = select(*row.values())
        if replacing is not ANY_WAITING:
            newest = (
                select(func.max(table.c.id))
                .where(table.c.subject == subject, table.c.applied_at.is_(None))
                .scalar_subquery()
            )
            chosen = chosen.where(newest.is_(None) if replacing is None else newest == replacing)
        with self.engine.begin() as conn:
            if replacing is not ANY_WAITING:
                # PostgreSQL: deciders on one entry queue here, so the second sees the first's row (READ
                # COMMITTED re-reads per statement). SQLite leaves FOR UPDATE out; its insert is atomic anyway.
                conn.execute(select(client_review.c.id).where(client_review.c.subject == subject).with_for_update())
            stored = conn.execute(insert(table).from_select(list(row), chosen).returning(table.c.id)).first()
        return None if stored is None else int(stored[0])

    def pending_review_decisions(self) -> list[dict[str, Any]]:
        """Decisions not applied yet, oldest first (a later decision on the same subject wins by coming last)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(review_decisions).where(review_decisions.c.applied_at.is_(None)).order_by(review_decisions.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def mark_review_decision_applied(self, decision_id: int, outcome: str) -> bool:
        """Record what the sync did with a decision; False when it was already marked (two runs applied it: the
        first outcome stands and only one run counts it)."""
        with self.engine.begin() as conn:
            marked = conn.execute(
                update(review_decisions)
                .where(review_decisions.c.id == decision_id, review_decisions.c.applied_at.is_(None))
                .values(applied_at=utcnow(), outcome=outcome)
            )
            return marked.rowcount == 1

    def mark_review_decision_superseded(self, decision_id: int, newer: dict[str, Any]) -> bool:
        """Close a decision that a later one on the same subject replaced before it was applied."""
        outcome = (
            f"{SUPERSEDED}{newer['id']} ({newer['decision']}, by {newer['decided_by']}) before it was applied; "
            "nothing was done."
        )
        return self.mark_review_decision_applied(decision_id, outcome)

    def applied_review_decisions(self, decision: str) -> list[dict[str, Any]]:
        """The applied decisions of one kind, less those superseded, oldest first: the ones that keep acting on
        later runs (two records told apart, an entry ignored)."""
        table = review_decisions
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(table)
                .where(
                    table.c.decision == decision,
                    table.c.applied_at.is_not(None),
                    not_(table.c.outcome.startswith(SUPERSEDED, autoescape=True)),
                )
                .order_by(table.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def told_apart_in_force(self) -> set[tuple[int, int]]:
        """(Fakturownia id, CRM id) pairs a person told apart that the client sync keeps apart: every applied
        `different` not superseded, and a pending one that is its subject's latest pending decision (the next
        client sync applies it before it matches, so every sync must honour it from the moment it is made)."""
        latest = {row["subject"]: row for row in self.pending_review_decisions()}.values()
        rows = [*self.applied_review_decisions("different"), *(row for row in latest if row["decision"] == "different")]
        return {
            (int(row["fakturownia_client_id"]), int(row["crm_client_id"]))
            for row in rows
            if row["fakturownia_client_id"] and row["crm_client_id"]
        }

    def review_decision_audit(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest decisions first, applied or not."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(review_decisions).order_by(review_decisions.c.id.desc()).limit(limit))
            return [dict(row._mapping) for row in rows]
