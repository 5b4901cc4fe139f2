"""Claims on creates, held on every evidence key of the record at once.

A create (a CRM client, a Fakturownia client, a deal) is claimed before it is made, so that no two
processes make it twice. One company can be reached by several keys (its client card, its NIP, its
e-mail), and two processes may reach it by different ones; so a claim holds ALL the keys of its create:
one `create_claims` row plus one `create_claim_keys` row per key, whose primary key (target, key) lets one
claim at a time hold a key. Both are written in one transaction: if any key is held, nothing is written
and the caller learns who holds it and whether that create is confirmed (with the created record's id).

A take-over (of our own unconfirmed claim, or of one older than the stale window) is one transaction
too: it re-stamps every unconfirmed claim on our keys that may be taken, merges them into one (so every
key they reserved stays reserved) and adds our missing keys; if any key is held by a claim it may not
take, nothing changes. Keys are written in sorted order so two writers never wait on each other in a
cycle. `claims.py` (one level up) is the protocol built on this.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from fakturownia_sync.state.engine import ATTEMPT_ENDED, StoreEngine, utcnow
from fakturownia_sync.state.schema import create_claim_keys, create_claims

CLAIM_ATTEMPTS = 5


@dataclass(frozen=True)
class CreateClaim:
    """A claimed create: `created_id` is None while the create is in flight or its answer was lost."""

    id: int
    target: str
    owner: str
    claimed_at: datetime
    created_id: int | None
    keys: frozenset[str]
    token: str

    @property
    def confirmed(self) -> bool:
        return self.created_id is not None


@dataclass(frozen=True)
class ClaimAttempt:
    """The outcome of claiming: `claim` (ours) when every key was got, else `holder`, a claim on one of them."""

    claim: CreateClaim | None = None
    holder: CreateClaim | None = None


class _Blocked(Exception):
    def __init__(self, holder: CreateClaim | None) -> None:
        self.holder = holder


def _sorted_keys(keys: Iterable[str]) -> list[str]:
    wanted = sorted({str(key) for key in keys if key})
    if not wanted:
        raise ValueError("a create claim needs at least one key")
    return wanted


def _retry_pause(attempt: int) -> None:
    time.sleep(0.05 * attempt)


class CreateClaimsStore(StoreEngine):
    def claim_create(self, target: str, keys: Iterable[str], owner: str) -> ClaimAttempt:
        """Claim a create under all `keys` at once, or learn who holds one of them (nothing is written then)."""
        wanted = _sorted_keys(keys)
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            token, now = uuid4().hex, utcnow()
            try:
                with self.engine.begin() as conn:
                    claim_id = conn.execute(
                        insert(create_claims).values(target=target, claimed_by=owner, claimed_at=now, token=token)
                    ).inserted_primary_key[0]
                    conn.execute(
                        insert(create_claim_keys),
                        [{"target": target, "claim_key": key, "claim_id": claim_id} for key in wanted],
                    )
                return ClaimAttempt(
                    claim=CreateClaim(int(claim_id), target, owner, now, None, frozenset(wanted), token)
                )
            except IntegrityError:
                pass
            except DBAPIError:  # a deadlock or serialisation failure: the other writer went first
                if attempt == CLAIM_ATTEMPTS:
                    raise
            holder = self._first_holder(target, wanted)
            if holder is not None:
                return ClaimAttempt(holder=holder)
            _retry_pause(attempt)  # the holder let go between our insert and our look
        raise RuntimeError(f"could not claim {target} {wanted}: the keys kept changing hands")

    def take_over_create(self, target: str, keys: Iterable[str], owner: str, *, stale_before: datetime) -> ClaimAttempt:
        """Take over the unconfirmed claims on `keys` that are ours or older than `stale_before`, as one claim
        holding their keys and ours; or learn the holder that may not be taken (nothing changes then)."""
        wanted = _sorted_keys(keys)
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            token, now = uuid4().hex, utcnow()
            try:
                with self.engine.begin() as conn:
                    claim = self._take_over(conn, target, wanted, owner, stale_before, token, now)
                if claim is not None:
                    return ClaimAttempt(claim=claim)
                return self.claim_create(target, wanted, owner)  # nobody holds the keys any more
            except _Blocked as blocked:
                if blocked.holder is not None:
                    return ClaimAttempt(holder=blocked.holder)
            except IntegrityError:
                holder = self._first_holder(target, wanted)
                if holder is not None:
                    return ClaimAttempt(holder=holder)
            except DBAPIError:
                if attempt == CLAIM_ATTEMPTS:
                    raise
            _retry_pause(attempt)
        raise RuntimeError(f"could not take over {target} {wanted}: the keys kept changing hands")

    def _take_over(
        self,
        conn: Connection,
        target: str,
        wanted: list[str],
        owner: str,
        stale_before: datetime,
        token: str,
        now: datetime,
    ) -> CreateClaim | None:
        # Write first: on SQLite that takes the write lock before anything is read, on PostgreSQL it locks
        # the rows, and a concurrent take-over re-checks the condition against our fresh stamp and loses.
        holding = select(create_claim_keys.c.claim_id).where(
            create_claim_keys.c.target == target, create_claim_keys.c.claim_key.in_(wanted)
        )
        conn.execute(
            update(create_claims)
            .where(
                create_claims.c.id.in_(holding),
                create_claims.c.created_id.is_(None),
                (create_claims.c.claimed_by == owner) | (create_claims.c.claimed_at < stale_before),
            )
            .values(claimed_by=owner, claimed_at=now, token=token)
        )
        holders = self._holders(conn, target, wanted)
        if not holders:
            return None
        blocking = [holder for holder in holders if holder.token != token]
        if blocking:
            raise _Blocked(_pick(blocking))
        survivor = min(holders, key=lambda holder: holder.id)
        others = [holder.id for holder in holders if holder.id != survivor.id]
        if others:
            conn.execute(
                update(create_claim_keys).where(create_claim_keys.c.claim_id.in_(others)).values(claim_id=survivor.id)
            )
            conn.execute(delete(create_claims).where(create_claims.c.id.in_(others)))
        held = frozenset().union(*(holder.keys for holder in holders))
        missing = [key for key in wanted if key not in held]
        if missing:
            conn.execute(
                insert(create_claim_keys),
                [{"target": target, "claim_key": key, "claim_id": survivor.id} for key in missing],
            )
        return CreateClaim(survivor.id, target, owner, now, None, held | frozenset(wanted), token)

    def confirm_create(self, claim_id: int, created_id: int) -> bool:
        """Record the created record's id on the claim; False when it was confirmed already (by a take-over)."""
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(create_claims)
                    .where(create_claims.c.id == int(claim_id), create_claims.c.created_id.is_(None))
                    .values(created_id=int(created_id))
                ).rowcount
            )

    def end_create_attempt(self, claim_id: int) -> None:
        """The server answered the create holding this claim: it can no longer land, so a look-up decides at once
        whether it is sent again (`claims.create_under_claim`)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(create_claims)
                .where(create_claims.c.id == int(claim_id), create_claims.c.created_id.is_(None))
                .values(claimed_at=ATTEMPT_ENDED)
            )

    def release_create(self, claim_id: int) -> None:
        """Forget an unconfirmed claim and free all its keys (the create was refused: nothing exists)."""
        unconfirmed = select(create_claims.c.id).where(
            create_claims.c.id == int(claim_id), create_claims.c.created_id.is_(None)
        )
        with self.engine.begin() as conn:
            conn.execute(delete(create_claim_keys).where(create_claim_keys.c.claim_id.in_(unconfirmed)))
            conn.execute(
                delete(create_claims).where(create_claims.c.id == int(claim_id), create_claims.c.created_id.is_(None))
            )

    def create_claim(self, target: str, key: str) -> CreateClaim | None:
        """The claim holding `key` of `target`, or None."""
        with self.engine.connect() as conn:
            holders = self._holders(conn, target, [key])
        return holders[0] if holders else None

    def unconfirmed_creates(self, target: str) -> list[CreateClaim]:
        """Claims whose create has no recorded outcome (in flight, or its answer was lost, or a run died)."""
        with self.engine.connect() as conn:
            ids = select(create_claims.c.id).where(
                create_claims.c.target == target, create_claims.c.created_id.is_(None)
            )
            return self._claims(conn, ids)

    def _first_holder(self, target: str, wanted: list[str]) -> CreateClaim | None:
        with self.engine.connect() as conn:
            return _pick(self._holders(conn, target, wanted))

    def _holders(self, conn: Connection, target: str, wanted: list[str]) -> list[CreateClaim]:
        ids = select(create_claim_keys.c.claim_id).where(
            create_claim_keys.c.target == target, create_claim_keys.c.claim_key.in_(wanted)
        )
        return self._claims(conn, ids)

    @staticmethod
    def _claims(conn: Connection, ids: object) -> list[CreateClaim]:
        rows = conn.execute(
            select(create_claims, create_claim_keys.c.claim_key)
            .join(create_claim_keys, create_claim_keys.c.claim_id == create_claims.c.id)
            .where(create_claims.c.id.in_(ids))
            .order_by(create_claims.c.id)
        ).all()
        claims: dict[int, CreateClaim] = {}
        for row in rows:
            m = row._mapping
            known = claims.get(m["id"])
            keys = (known.keys if known else frozenset()) | {m["claim_key"]}
            claims[m["id"]] = CreateClaim(
                m["id"], m["target"], m["claimed_by"], m["claimed_at"], m["created_id"], keys, m["token"]
            )
        return list(claims.values())


def _pick(holders: list[CreateClaim]) -> CreateClaim | None:
    """The holder to report: a confirmed one (its record exists) before one in flight."""
    return next((holder for holder in holders if holder.confirmed), holders[0] if holders else None)
