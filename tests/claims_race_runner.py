"""One racing process of `test_claims`: creates companies through `create_under_claim`, printing its outcomes.

Run as `python -m tests.claims_race_runner URL SIDE ROUND COMPANIES START_AT`. Side "a" reaches each company
by its client card and NIP, side "b" by the NIP and the e-mail of a buyer without a card, as the invoice
sync and the client sync would. `create()` records into the shared `race_creates` table, so the test can
count how many times each company was really created.
"""

from __future__ import annotations

import json
import random
import sys
import time

import sqlalchemy as sa

from fakturownia_sync.claims import CRM_CLIENT, create_under_claim
from fakturownia_sync.state import StateStore

DEADLINE_SECONDS = 60


def keys_for(side: str, round_no: int, company: int) -> list[str]:
    nip = f"nip:{round_no:02d}{company:08d}"
    if side == "a":
        return [f"fakturownia:{round_no}-{company}", nip]
    return [nip, f"email:c{company}.r{round_no}@example.com"]


def main(url: str, side: str, round_no: int, companies: int, start_at: float) -> None:
    store = StateStore(url)  # the test migrated it; racing processes only read and write
    owner = f"race/{side}"
    rng = random.Random(f"{side}{round_no}")

    def find_existing(company: int) -> int | None:
        with store.engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT min(id) FROM race_creates WHERE round = :r AND company = :c"),
                {"r": round_no, "c": company},
            ).scalar()

    def create(company: int) -> int:
        with store.engine.begin() as conn:
            created = conn.execute(
                sa.text("INSERT INTO race_creates (round, company, side) VALUES (:r, :c, :s) RETURNING id"),
                {"r": round_no, "c": company, "s": side},
            ).scalar_one()
        time.sleep(rng.random() / 500)  # the answer takes a moment: the other side meets the claim in flight
        return int(created)

    outcomes: dict[int, list[object]] = {}
    deferrals = 0
    pending = list(range(companies))
    deadline = time.monotonic() + DEADLINE_SECONDS
    time.sleep(max(0.0, start_at - time.time()))
    while pending and time.monotonic() < deadline:
        deferred = []
        for company in pending:
            outcome = create_under_claim(
                store,
                CRM_CLIENT,
                keys_for(side, round_no, company),
                owner,
                find_existing=lambda company=company: find_existing(company),
                create=lambda company=company: create(company),
            )
            if outcome.status == "held_by_other":
                deferred.append(company)
                deferrals += 1
            else:
                outcomes[company] = [outcome.status, outcome.record_id]
        pending = deferred
        time.sleep(0.01)
    store.close()
    print(json.dumps({"outcomes": outcomes, "unfinished": pending, "deferrals": deferrals}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
