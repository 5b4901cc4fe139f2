"""Creates claimed on every evidence key at once: the store's claims and the create-under-claim protocol,
on SQLite and PostgreSQL, two real processes racing on PostgreSQL for the same companies, and migration 0009
that turns the pending deal rows into such claims."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from fakturownia_sync.claims import CRM_CLIENT, CRM_DEAL, FAKTUROWNIA_CLIENT, ClaimOutcome, create_under_claim
from fakturownia_sync.errors import AmbiguousWriteError, ApiRejected
from fakturownia_sync.state import StateStore
from fakturownia_sync.state.engine import MIGRATIONS, VERSION_TABLE
from fakturownia_sync.state.schema import UtcDateTime
from fakturownia_sync.timing import STALE_CLAIM_MINUTES
from tests.sync_harness import run_at_once

CARD, NIP, EMAIL = "fakturownia:7", "nip:5261040828", "email:biuro@example.com"


def future() -> datetime:
    """A stale-before in the future: every unconfirmed claim counts as stale."""
    return datetime.now(UTC) + timedelta(seconds=1)


def past() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=STALE_CLAIM_MINUTES)


class Calls:
    """Stand-ins for the target system: count the look-ups and creates the protocol makes."""

    def __init__(self, existing: int | None = None, created: int = 500, error: Exception | None = None) -> None:
        self.existing, self.created, self.error = existing, created, error
        self.finds = self.creates = 0

    def find_existing(self) -> int | None:
        self.finds += 1
        return self.existing

    def create(self) -> int:
        self.creates += 1
        if self.error is not None:
            raise self.error
        return self.created


def run(store: StateStore, keys: list[str], owner: str, calls: Calls, **kwargs: object) -> ClaimOutcome:
    return create_under_claim(
        store, CRM_CLIENT, keys, owner, find_existing=calls.find_existing, create=calls.create, **kwargs
    )


def test_a_claim_holds_all_its_keys_or_none(store: StateStore) -> None:
    first = store.claim_create(CRM_CLIENT, [CARD, NIP], "run/a")
    assert first.claim is not None and first.claim.keys == {CARD, NIP}
    second = store.claim_create(CRM_CLIENT, [NIP, EMAIL], "run/b")
    assert second.claim is None
    assert (second.holder.id, second.holder.owner, second.holder.confirmed) == (first.claim.id, "run/a", False)
    assert store.create_claim(CRM_CLIENT, EMAIL) is None  # the failed claim left none of its keys behind


def test_a_confirmed_holder_names_the_created_record(store: StateStore) -> None:
    claim = store.claim_create(CRM_CLIENT, [CARD, NIP], "run/a").claim
    assert store.confirm_create(claim.id, 55) is True
    assert store.confirm_create(claim.id, 56) is False
    holder = store.claim_create(CRM_CLIENT, [NIP, EMAIL], "run/b").holder
    assert (holder.created_id, holder.confirmed) == (55, True)
    assert store.unconfirmed_creates(CRM_CLIENT) == []


def test_release_frees_every_key_and_keeps_confirmed_claims(store: StateStore) -> None:
    claim = store.claim_create(CRM_CLIENT, [CARD, NIP, EMAIL], "run/a").claim
    store.release_create(claim.id)
    assert all(store.create_claim(CRM_CLIENT, key) is None for key in (CARD, NIP, EMAIL))
    again = store.claim_create(CRM_CLIENT, [EMAIL], "run/b").claim
    store.confirm_create(again.id, 9)
    store.release_create(again.id)
    assert store.create_claim(CRM_CLIENT, EMAIL).created_id == 9


def test_targets_are_separate(store: StateStore) -> None:
    assert store.claim_create(CRM_CLIENT, [NIP], "run/a").claim is not None
    assert store.claim_create(FAKTUROWNIA_CLIENT, [NIP], "run/b").claim is not None
    assert store.claim_create(CRM_DEAL, ["invoice:1"], "run/b").claim is not None


def test_a_live_claim_of_another_run_is_not_taken_over(store: StateStore) -> None:
    store.claim_create(CRM_CLIENT, [CARD, NIP], "run/a")
    attempt = store.take_over_create(CRM_CLIENT, [NIP, EMAIL], "run/b", stale_before=past())
    assert attempt.claim is None and attempt.holder.owner == "run/a"
    assert store.create_claim(CRM_CLIENT, EMAIL) is None


def test_take_over_merges_every_stale_claim_on_the_keys_into_one(store: StateStore) -> None:
    by_card = store.claim_create(CRM_CLIENT, [CARD], "run/a").claim
    by_email = store.claim_create(CRM_CLIENT, [EMAIL], "run/c").claim
    taken = store.take_over_create(CRM_CLIENT, [CARD, NIP, EMAIL], "run/b", stale_before=future()).claim
    assert taken is not None and taken.keys == {CARD, NIP, EMAIL} and taken.owner == "run/b"
    assert taken.id == min(by_card.id, by_email.id)
    [only] = store.unconfirmed_creates(CRM_CLIENT)
    assert (only.id, only.owner, only.keys) == (taken.id, "run/b", {CARD, NIP, EMAIL})
    # the run that held the card first now meets run/b's claim, live again after the take-over
    assert store.claim_create(CRM_CLIENT, [CARD], "run/a").holder.owner == "run/b"


def test_a_confirmed_claim_is_never_taken_over(store: StateStore) -> None:
    claim = store.claim_create(CRM_CLIENT, [CARD, NIP], "run/a").claim
    store.confirm_create(claim.id, 55)
    attempt = store.take_over_create(CRM_CLIENT, [NIP], "run/b", stale_before=future())
    assert attempt.claim is None and attempt.holder.created_id == 55


def test_take_over_of_keys_nobody_holds_is_a_fresh_claim(store: StateStore) -> None:
    attempt = store.take_over_create(CRM_CLIENT, [EMAIL], "run/b", stale_before=past())
    assert attempt.claim is not None and store.create_claim(CRM_CLIENT, EMAIL).owner == "run/b"


def test_create_under_claim_creates_and_confirms(store: StateStore) -> None:
    calls = Calls(created=500)
    assert run(store, [CARD, NIP], "run/a", calls) == ClaimOutcome.created(500)
    assert (calls.finds, calls.creates) == (0, 1)
    other = Calls()
    assert run(store, [NIP, EMAIL], "run/b", other) == ClaimOutcome.found(500)
    assert (other.finds, other.creates) == (0, 0)


def test_a_create_in_flight_elsewhere_defers(store: StateStore) -> None:
    store.claim_create(CRM_CLIENT, [CARD, NIP], "run/a")
    calls = Calls()
    assert run(store, [NIP, EMAIL], "run/b", calls) == ClaimOutcome.held_by_other("run/a")
    assert (calls.finds, calls.creates) == (0, 0)


def test_a_lost_answer_stays_unconfirmed_and_is_looked_up_not_recreated(store: StateStore) -> None:
    lost = Calls(error=AmbiguousWriteError("crm", "connection reset after sending"))
    assert run(store, [CARD, NIP], "run/a", lost) == ClaimOutcome.unconfirmed()
    [pending] = store.unconfirmed_creates(CRM_CLIENT)
    assert pending.owner == "run/a"
    within_window = Calls()
    assert run(store, [NIP, EMAIL], "run/b", within_window, stale_before=past()).status == "held_by_other"
    after_window = Calls(existing=77)
    assert run(store, [NIP, EMAIL], "run/b", after_window, stale_before=future()) == ClaimOutcome.found(77)
    assert (after_window.finds, after_window.creates) == (1, 0)
    assert store.create_claim(CRM_CLIENT, CARD).created_id == 77


def test_a_taken_over_create_that_never_landed_is_made_once(store: StateStore) -> None:
    run(store, [CARD], "run/a", Calls(error=AmbiguousWriteError("crm", "timed out")))
    calls = Calls(existing=None, created=88)
    assert run(store, [CARD, NIP], "run/b", calls, stale_before=future()) == ClaimOutcome.created(88)
    assert (calls.finds, calls.creates) == (1, 1)


def test_the_same_run_takes_its_own_claim_over_at_once(store: StateStore) -> None:
    run(store, [CARD], "run/a", Calls(error=AmbiguousWriteError("crm", "timed out")))
    retry = Calls(existing=31)
    assert run(store, [CARD], "run/a", retry, stale_before=past()) == ClaimOutcome.found(31)


def test_a_refused_create_releases_every_key(store: StateStore) -> None:
    refused = Calls(error=ApiRejected("crm", "name can't be blank", status=422))
    with pytest.raises(ApiRejected):
        run(store, [CARD, NIP, EMAIL], "run/a", refused)
    assert all(store.create_claim(CRM_CLIENT, key) is None for key in (CARD, NIP, EMAIL))
    assert run(store, [NIP], "run/b", Calls(created=3)) == ClaimOutcome.created(3)


def test_an_unexpected_error_leaves_the_claim_for_a_look_up(store: StateStore) -> None:
    with pytest.raises(RuntimeError):
        run(store, [CARD], "run/a", Calls(error=RuntimeError("worker killed")))
    assert store.create_claim(CRM_CLIENT, CARD).created_id is None


def test_a_claim_needs_a_key(store: StateStore) -> None:
    with pytest.raises(ValueError, match="at least one key"):
        store.claim_create(CRM_CLIENT, ["", None], "run/a")  # type: ignore[list-item]


# Two processes ---------------------------------------------------------------------------------------------

COMPANIES, ROUNDS = 80, 3


def test_two_processes_create_each_company_once_when_reaching_it_by_different_evidence(postgres_url: str) -> None:
    StateStore.open(postgres_url).close()
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE race_creates (id serial PRIMARY KEY, round int, company int, side text)"))
    deferrals = 0
    for round_no in range(ROUNDS):
        start_at = str(time.time() + 2.5)
        runners = [
            ["tests.claims_race_runner", postgres_url, side, str(round_no), str(COMPANIES), start_at] for side in "ab"
        ]
        results = []
        for finished in run_at_once(runners, timeout=120):
            assert finished.returncode == 0, finished.stderr
            results.append(json.loads(finished.stdout))
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT company, count(*), min(id) FROM race_creates WHERE round = :r GROUP BY company"),
                {"r": round_no},
            ).all()
        made = {company: (count, first) for company, count, first in rows}
        assert sorted(made) == list(range(COMPANIES))
        assert {count for count, _first in made.values()} == {1}, "a company was created twice"
        for result in results:
            assert result["unfinished"] == []
            deferrals += result["deferrals"]
            for company, (status, record_id) in result["outcomes"].items():
                assert status in ("created", "found") and record_id == made[int(company)][1]
        created = sum(status == "created" for result in results for status, _ in result["outcomes"].values())
        assert created == COMPANIES
    engine.dispose()
    assert deferrals > 0, "the two processes never met a claim in flight: the race was not exercised"


# Migration 0009: the pending deal rows become claims ------------------------------------------------------


def test_migration_0009_moves_pending_deal_rows_into_create_claims(state_url: str) -> None:
    engine = sa.create_engine(state_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["version_table"] = VERSION_TABLE
    claimed_at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0008")
        rows = [  # linked; pending with its claim; pending with no claim time; pending whose key is claimed already
            (1, 100, "linked", None, None),
            (2, None, "pending", "dag/a", claimed_at),
            (3, None, "pending", None, None),
            (4, None, "pending", "dag/b", claimed_at),
        ]
        table = sa.table(
            "invoice_deals",
            *(sa.column(name) for name in ("invoice_id", "deal_id", "state", "claimed_by")),
            *(sa.column(name, UtcDateTime) for name in ("claimed_at", "created_at", "updated_at")),
        )
        for invoice_id, deal_id, state, owner, at in rows:
            conn.execute(
                sa.insert(table).values(
                    invoice_id=invoice_id, deal_id=deal_id, state=state, claimed_by=owner, claimed_at=at,
                    created_at=claimed_at, updated_at=claimed_at,
                )
            )  # fmt: skip
    engine.dispose()
    before = StateStore(state_url)
    before.claim_create(CRM_DEAL, ["invoice:4"], "dag/c")  # what a newer run already claimed wins
    before.close()
    store = StateStore.open(state_url)
    try:
        assert store.deal_link(1).deal_id == 100 and store.count_deal_links() == 1
        moved = store.create_claim(CRM_DEAL, "invoice:2")
        assert (moved.owner, moved.claimed_at, moved.created_id) == ("dag/a", claimed_at, None)
        assert store.create_claim(CRM_DEAL, "invoice:3").owner == "migration/0009"
        assert store.create_claim(CRM_DEAL, "invoice:4").owner == "dag/c"
        columns = {column["name"] for column in sa.inspect(store.engine).get_columns("invoice_deals")}
        assert not {"state", "claimed_by", "claimed_at"} & columns
    finally:
        store.close()
    with engine.begin() as conn:  # and back: the unconfirmed deal claims become pending rows again
        config.attributes["connection"] = conn
        command.downgrade(config, "0008")
        pending = conn.execute(sa.text("SELECT invoice_id, claimed_by FROM invoice_deals WHERE state = 'pending'"))
        assert sorted(pending) == [(2, "dag/a"), (3, "migration/0009"), (4, "dag/c")]
        assert conn.execute(sa.text("SELECT count(*) FROM create_claims WHERE target = 'crm_deal'")).scalar() == 0
    engine.dispose()
