"""Request counters exposed on ``/_sandbox/stats``.

Tests and benchmarks assert on them (how many calls a sync made, how many
writes really landed, how many faults fired), so every vendor API request is
counted, while control calls are not.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

FAULT_KINDS = ("latency", "rate_limited", "error", "drop", "error_body")
_NUMERIC_SEGMENT = re.compile(r"/\d+(?=[./]|$)")


def endpoint_label(method: str, path: str) -> str:
    """``GET /invoices/17.json`` → ``GET /invoices/{id}.json``, so counts group by route."""
    return f"{method} {_NUMERIC_SEGMENT.sub('/{id}', path)}"


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_status: Counter[str] = Counter()
        self.by_endpoint: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()
        self.faults: Counter[str] = Counter(dict.fromkeys(FAULT_KINDS, 0))

    def request(self, endpoint: str) -> None:
        self.requests += 1
        self.by_endpoint[endpoint] += 1

    def status(self, status: int) -> None:
        self.by_status[str(status)] += 1

    def write(self, endpoint: str) -> None:
        self.writes[endpoint] += 1

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(sorted(self.by_status.items())),
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "writes": dict(sorted(self.writes.items())),
            "faults": {kind: self.faults[kind] for kind in FAULT_KINDS},
        }
