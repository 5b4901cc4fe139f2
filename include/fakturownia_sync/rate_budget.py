"""How fast one process may call one vendor API: a configured ceiling, and a rate learnt from its 429s.

Across workers, an Airflow pool bounds how many tasks call an API at once; inside one process this budget
spaces the calls out. It is shared by every thread and every client of the process that talks to the same
account (`RateBudget.shared`), because the vendor counts them together.

Nobody has to know the vendor's limit. With no `requests_per_minute` configured the budget starts unlimited,
and a 429 teaches it (AIMD, as TCP does with congestion):

* **multiplicative decrease**: the allowed rate drops to `DECREASE` × the rate in use (on the first 429, the
  rate of answers actually received over the last seconds), and every thread pauses for the `Retry-After` the
  server asked for, not just the thread that got the 429;
* **additive increase**: while answers are fine the rate creeps back up by `INCREASE_SHARE` of the highest
  learnt rate per second (at least `MIN_STEP`), so the budget keeps probing for room instead of settling far
  below the limit; a 429 with too few recent answers to tell a rate from only pauses;
* **careful near the last limit**: once back at `APPROACH` × the rate that drew the last 429, it climbs
  `CAREFUL_SHARE` as fast (as TCP CUBIC flattens near its last loss), because every 429 costs every thread
  a whole `Retry-After` pause; found by `make bench` scenario f, where climbing at full speed into the same
  limit drew a 429 every ~11 s;
* **the same limit met again is cut gently**: a 429 at about the rate that drew the last one (within
  `APPROACH`), at least `SETTLE` seconds after that cut's pause, is the probe finding a limit already
  known, not a new one: the rate drops to `APPROACH` × it instead of `DECREASE` ×, so the probe does not
  climb back from far below the limit every time it touches it. A 429 sooner after a cut, or at another
  rate, says the limit moved (another worker on the account, a lower plan): the full `DECREASE` applies;
* **the pause is not lost**: the bucket refills during the `Retry-After` pause, as the server's does while
  nobody calls it, so the threads resume with up to a second's worth of requests in hand instead of
  starting from an empty bucket; every 429 used to cost a whole pause of capacity on top of the cut;
* a 429 for a request sent before the last pause ended is a straggler of the same episode: its own thread
  waits, but it neither cuts the rate again nor extends the pause;
* **climbs only while it binds**: the rate creeps up only over time in which some caller had to wait for
  the budget (as TCP validates its window, RFC 7661); while the callers are slower than the budget (a
  backfill between windows, a machine short of CPU) the learnt rate stays where the 429s put it instead of
  drifting far above the limit, which the next burst would then hit with a full cut;
* after `FORGET_AFTER` seconds without a 429 the learnt rate is dropped (the limit may have been raised).

A configured `requests_per_minute` stays a hard ceiling over the learnt rate. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

DECREASE = 0.8
INCREASE_SHARE = 0.02
MIN_RATE = 0.2
FORGET_AFTER = 120.0
DEFAULT_PAUSE = 1.0
MAX_PAUSE = 120.0
MIN_STEP = 0.1
APPROACH = 0.95
CAREFUL_SHARE = 0.1
SETTLE = 5.0
_WINDOW = 2.0
_MIN_EVIDENCE = 3

_shared: dict[str, RateBudget] = {}
_shared_lock = threading.Lock()


class RateBudget:
    """A token bucket refilled at the allowed rate (ceiling or learnt), holding at most one second's worth."""

    def __init__(
        self,
        requests_per_minute: float | None,
        *,
        learn: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ceiling = (requests_per_minute or 0) / 60.0
        self.learn = learn
        self.learnt: float | None = None
        self._peak = 0.0
        self._cut_rate = 0.0  # the rate in use when the last 429 came
        self._cut_ended = float("-inf")  # when the pause of the last cut ended
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._tokens = max(1.0, self.ceiling)
        self._last = now
        self._paused_until = now
        self._last_increase = now
        self._bound = False  # a caller waited for the budget since the last increase
        self._last_429 = float("-inf")
        self._answers: deque[float] = deque()
        self.waited_seconds = 0.0
        self.cuts = 0

    @classmethod
    def shared(cls, key: str, requests_per_minute: float | None) -> RateBudget:
        """The process-wide budget of one API account (`key`); a new configured ceiling replaces the old one."""
        with _shared_lock:
            budget = _shared.get(key)
            if budget is None:
                budget = _shared[key] = cls(requests_per_minute)
            else:
                with budget._lock:
                    budget.ceiling = (requests_per_minute or 0) / 60.0
            return budget

    @property
    def rate(self) -> float:
        """Requests per second allowed now; 0 means unlimited."""
        with self._lock:
            return self._rate()

    def _rate(self) -> float:
        if self.learnt is None:
            return self.ceiling
        return min(self.learnt, self.ceiling) if self.ceiling > 0 else self.learnt

    def acquire(self, timeout: float | None = None) -> bool:
        """Take one request's worth of budget, sleeping until it is there.

        Returns False, without waiting, when it would not be there within `timeout` seconds.
        """
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            with self._lock:
                now = self._clock()
                self._probe_up(now)
                if now < self._paused_until:
                    wait = self._paused_until - now
                else:
                    rate = self._rate()
                    if rate <= 0:
                        return True
                    elapsed = max(0.0, now - self._last)
                    self._tokens = min(max(1.0, rate), self._tokens + elapsed * rate)
                    self._last = max(self._last, now)
                    if self._tokens >= 1.0 - 1e-9:  # rounding must not leave a wait too small to move the clock
                        self._tokens = max(0.0, self._tokens - 1.0)
                        return True
                    wait = (1.0 - self._tokens) / rate
                    self._bound = True
                if deadline is not None and now + wait > deadline:
                    return False
                self.waited_seconds += wait
            self._sleep(wait)

    def stamp(self) -> float:
        """The budget's clock, to be passed back with the answer of the request sent now."""
        return self._clock()

    def answered(self, sent_at: float) -> None:
        """A request got an answer that was not a 429: counts toward the observed rate."""
        with self._lock:
            now = self._clock()
            self._answers.append(now)
            while self._answers and self._answers[0] < now - _WINDOW:
                self._answers.popleft()

    def rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """A request sent at `sent_at` was answered 429: pause everyone and (unless a straggler) slow down."""
        with self._lock:
            now = self._clock()
            self._last_429 = now
            if sent_at < self._paused_until:
                return  # sent before the last pause ended: same episode, already answered for
            pause = DEFAULT_PAUSE if retry_after is None else min(max(retry_after, 0.0), MAX_PAUSE)
            self._paused_until = now + pause
            if not self.learn:
                return
            base = self._rate() or self._observed(now)
            if base <= 0:
                return  # too few answers yet to tell a rate from: the pause alone must do
            known = self._cut_rate > 0 and APPROACH <= base / self._cut_rate <= 1 / APPROACH
            settled = now - self._cut_ended >= SETTLE
            self.learnt = max(MIN_RATE, base * (APPROACH if known and settled else DECREASE))
            self._cut_rate = base
            self._cut_ended = self._paused_until
            self._peak = max(self._peak, self.learnt)
            self.cuts += 1
            self._tokens = 0.0
            self._last = now  # refills during the pause, as the server's bucket does
            self._last_increase = self._paused_until

    def report(self) -> dict[str, float | int | None]:
        """What the budget learnt, for benchmarks and logs: the rate at the end, cuts, seconds waited."""
        with self._lock:
            return {
                "learnt_per_minute": None if self.learnt is None else round(self.learnt * 60, 1),
                "cuts": self.cuts,
                "waited_seconds": round(self.waited_seconds, 1),
            }

    def _observed(self, now: float) -> float:
        while self._answers and self._answers[0] < now - _WINDOW:
            self._answers.popleft()
        if len(self._answers) < _MIN_EVIDENCE:
            return 0.0
        span = min(_WINDOW, max(1.0, now - self._answers[0]))
        return len(self._answers) / span

    def _probe_up(self, now: float) -> None:
        if self.learnt is None:
            return
        if now - self._last_429 > FORGET_AFTER:
            self.learnt = None
            self._tokens = max(1.0, self.ceiling)
            return
        if now > self._last_increase:
            if self._bound:
                step = max(INCREASE_SHARE * self._peak, MIN_STEP)
                if self.learnt >= APPROACH * self._cut_rate:
                    step *= CAREFUL_SHARE
                self.learnt += step * (now - self._last_increase)
                if self.ceiling > 0:
                    self.learnt = min(self.learnt, self.ceiling)
                self._bound = False
            self._last_increase = now
