"""The rate limit is learnt from 429 and Retry-After, with no `requests_per_minute` configured.

Against the sandbox with its `--rpm` limit, over real sockets: several clients of one account, each used by
several threads, share one budget and end with few of their calls answered 429. Plus the budget's rules on a
fake clock.
"""

from __future__ import annotations

import threading
import time

from fakturownia_sync.accounts import FAKTUROWNIA, ApiAccount
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.rate_budget import APPROACH, DECREASE, SETTLE, RateBudget
from fakturownia_sync.transport import RetryPolicy
from sandbox.process import SandboxProcess

LIMIT_RPM = 600
POLICY = RetryPolicy(max_attempts=20, backoff_initial=0.05, backoff_max=1.0, read_timeout=20.0)


def test_unconfigured_rate_limit_is_learnt_and_few_calls_are_refused() -> None:
    with SandboxProcess(clients=20, invoices=30, crm_clients=5, rpm=LIMIT_RPM) as sandbox:
        account = ApiAccount(FAKTUROWNIA, sandbox.fakturownia_url, "sandbox", sandbox.fakturownia_token)
        clients = [FakturowniaClient.connect(account, policy=POLICY) for _ in range(2)]
        assert clients[0].transport.budget is clients[1].transport.budget
        errors: list[BaseException] = []
        stop_at = time.monotonic() + 12.0

        def reader(client: FakturowniaClient) -> None:
            try:
                while time.monotonic() < stop_at:
                    client.get_invoice(1)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(client,)) for client in clients for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        calls = sum(client.transport.calls for client in clients)
        refused = sum(client.transport.rate_limited for client in clients)
        answered = calls - refused
        stats = sandbox.stats("fakturownia")
    assert refused > 0, "the limit was never met: nothing was learnt"
    assert refused < 0.10 * calls, f"{refused} of {calls} calls answered 429"
    assert clients[0].transport.budget.learnt is not None
    assert answered >= 0.5 * LIMIT_RPM / 60 * 12, f"only {answered} answers in 12 s: the budget throttles too hard"
    assert stats["faults"].get("rate_limited", 0) == refused


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_429_pauses_every_thread_and_cuts_the_rate_once_per_episode() -> None:
    fake = FakeTime()
    budget = RateBudget(None, clock=fake.clock, sleep=fake.sleep)
    for _ in range(10):  # ten answers in one second: 10 req/s observed
        sent = budget.stamp()
        assert budget.acquire()
        budget.answered(sent)
        fake.now += 0.1
    sent_before = budget.stamp()
    budget.rate_limited(budget.stamp(), retry_after=3.0)
    assert budget.learnt is not None and budget.rate == budget.learnt <= 10 * DECREASE + 1e-9
    learnt = budget.learnt
    budget.rate_limited(sent_before, retry_after=3.0)  # a straggler of the same episode
    assert budget.learnt == learnt and budget.cuts == 1
    started = fake.now
    assert budget.acquire()  # any thread: waits out the pause first
    assert fake.now - started >= 3.0


def test_rate_probes_back_up_and_a_configured_ceiling_stays_hard() -> None:
    fake = FakeTime()
    budget = RateBudget(120, clock=fake.clock, sleep=fake.sleep)  # ceiling 2 req/s
    budget.rate_limited(budget.stamp(), retry_after=0.0)
    assert budget.rate == 2 * DECREASE
    for _ in range(200):
        budget.acquire()
    assert budget.rate == 2.0  # climbed back, never above the ceiling


def _answered_at(budget: RateBudget, fake: FakeTime, per_second: int) -> None:
    """One second of answers at `per_second`: the rate the budget observes before its first 429."""
    for _ in range(per_second):
        sent = budget.stamp()
        assert budget.acquire()
        budget.answered(sent)
        fake.now += 1 / per_second


def test_the_pause_refills_the_bucket_so_the_threads_resume_with_a_second_in_hand() -> None:
    fake = FakeTime()
    budget = RateBudget(None, clock=fake.clock, sleep=fake.sleep)
    _answered_at(budget, fake, 10)
    budget.rate_limited(budget.stamp(), retry_after=1.0)
    learnt = budget.learnt
    assert learnt is not None and abs(learnt - 10 * DECREASE) < 1e-9
    paused_at = fake.now
    assert budget.acquire()  # waits out the pause
    assert fake.now - paused_at >= 1.0
    resumed_at = fake.now
    for _ in range(int(learnt) - 1):  # the server's bucket refilled too: these go at once
        assert budget.acquire()
    assert fake.now == resumed_at
    assert budget.acquire()  # and then the learnt rate spaces the calls again
    assert fake.now > resumed_at


def test_the_same_limit_met_again_is_cut_gently_and_a_429_soon_after_a_cut_fully() -> None:
    fake = FakeTime()
    budget = RateBudget(None, clock=fake.clock, sleep=fake.sleep)
    _answered_at(budget, fake, 10)
    budget.rate_limited(budget.stamp(), retry_after=1.0)
    assert budget.learnt is not None and abs(budget.learnt - 10 * DECREASE) < 1e-9
    paused_until = fake.now + 1.0
    while budget.rate < APPROACH * 10 or fake.now < paused_until + SETTLE:  # climbs back, long after the cut
        assert budget.acquire()
    again = budget.rate
    budget.rate_limited(budget.stamp(), retry_after=1.0)
    assert abs(budget.rate - again * APPROACH) < 1e-9, "the known limit, met again, cost a full cut"
    cut = budget.rate
    fake.now += 2.0  # a 429 right after the gentle cut: the limit moved, the full decrease applies
    budget.rate_limited(budget.stamp(), retry_after=1.0)
    assert abs(budget.rate - cut * DECREASE) < 1e-6
    assert budget.cuts == 3


def test_the_rate_climbs_only_while_callers_wait_for_it() -> None:
    fake = FakeTime()
    budget = RateBudget(None, clock=fake.clock, sleep=fake.sleep)
    _answered_at(budget, fake, 10)
    budget.rate_limited(budget.stamp(), retry_after=1.0)
    cut = budget.rate
    assert budget.acquire()  # the pause
    for _ in range(60):  # a minute of callers slower than the budget (2 a second at 8 allowed): nobody waits
        fake.now += 0.5
        started = fake.now
        assert budget.acquire()
        assert fake.now == started
    assert budget.rate == cut, "the rate drifted up while it bound nobody"
    for _ in range(200):  # callers faster than the budget: it binds, so it probes for room again
        assert budget.acquire()
    assert budget.rate > cut
