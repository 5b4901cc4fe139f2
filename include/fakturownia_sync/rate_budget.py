"""A per-process requests-per-minute budget, so each worker stays inside its share of a vendor's limit.

Across workers, an Airflow pool bounds how many tasks call an API at once; inside one process this bucket
spaces the calls out. Thread-safe, because CRM writes go out from several threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateBudget:
    """Token bucket refilled at `requests_per_minute / 60` per second, holding at most one second's worth."""

    def __init__(
        self,
        requests_per_minute: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = (requests_per_minute or 0) / 60.0
        self.capacity = max(1.0, self.rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        """Take one request's worth of budget, sleeping until it is there. A budget of 0/None never waits."""
        if self.rate <= 0:
            return
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
                self.waited_seconds += wait
            self._sleep(wait)
