"""What a run did, counted: returned by the task (XCom), logged, stored with the run, printed by the demo.

Counters are updated from several writer threads, so they change only through `add` / `add_to`.

API calls, in every summary
    Every run's summary (invoices → deals, client sync, deals → invoices, a backfill's totals) holds
    `api_calls`: per API the calls *needed* (each logical request once), the calls *made* (every attempt,
    retries included), the `retries` and the 429 answers (`rate_limited`), as the transports count them.
    `api_calls` builds it, for every engine; `add_api_calls` adds up the steps of a backfill. A run whose
    made calls run well above its needed ones spent its time on retries; its 429s say how much of that was
    the rate limit (and how well the budget has learnt it, see `rate_budget`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

ApiCalls = dict[str, dict[str, int]]
"""`{"fakturownia": {"needed": n, "made": m, "retries": r, "rate_limited": k}, "sugester": {...}}`"""

API_CALL_COUNTS = ("needed", "made", "retries", "rate_limited")
_TRANSPORT_COUNTERS = {"needed": "requests", "made": "calls", "retries": "retries", "rate_limited": "rate_limited"}


class _CountingTransport(Protocol):
    def counters(self) -> dict[str, int]: ...


class _ApiClient(Protocol):
    @property
    def account(self) -> Any: ...  # an `ApiAccount`: `.api` names the API

    @property
    def transport(self) -> _CountingTransport: ...


def api_calls(*clients: _ApiClient, since: Mapping[str, Mapping[str, int]] | None = None) -> ApiCalls:
    """Per API of `clients`: calls needed, calls made, retries and 429s, counted by their transports.

    Transports count from their creation, and one client may serve several runs (a backfill's windows
    share theirs), so a run passes `since` (this function's answer when the run began) to count its own."""
    counts: ApiCalls = {}
    for client in clients:
        api = client.account.api.lower()  # "fakturownia", "sugester": the keys of every summary
        now = client.transport.counters()
        before = (since or {}).get(api, {})
        counts[api] = {name: now[_TRANSPORT_COUNTERS[name]] - before.get(name, 0) for name in API_CALL_COUNTS}
    return counts


def add_api_calls(*parts: Mapping[str, Mapping[str, int]] | None) -> ApiCalls:
    """`api_calls` of several runs (a backfill's client step and windows) added up per API and count."""
    total: ApiCalls = {}
    for part in parts:
        for api, counts in (part or {}).items():
            row = total.setdefault(api, dict.fromkeys(API_CALL_COUNTS, 0))
            for name, value in counts.items():
                row[name] = row.get(name, 0) + value
    return total


@dataclass
class RunSummary:
    stream: str
    status: str = "running"
    dry_run: bool = False
    window: str | None = None
    invoices_seen: int = 0
    deals_created: int = 0
    deals_updated: int = 0
    deals_unchanged: int = 0
    deals_recovered: int = 0
    deals_deferred: int = 0
    deals_unconfirmed: int = 0
    clients_linked: int = 0
    clients_created: int = 0
    deals_for_anonymous_buyers: int = 0  # buyers with no card, tax id or e-mail, by `anonymous_buyers`
    tax_id_warnings: int = 0  # a buyer's tax id that is no tax id (junk, failed checksum): used as none
    deals_with_responsible: int = 0  # new deals given the CRM user paired with the invoice's issuer
    deals_without_responsible: int = 0  # new deals whose invoice's issuer has no paired CRM user
    deals_marked_cancelled: int = 0  # deals written with "(anulowana)": their invoice is cancelled
    deals_marked_out_of_kinds: int = 0  # deals written with "(poza wybranymi rodzajami)": kind no longer chosen
    corrections_applied: int = 0  # corrections written onto the deal of the invoice they correct
    corrections_without_deal: int = 0  # corrections recorded for an invoice that has no deal (yet)
    deals_reapplied: int = 0  # deals written under an older deal-shaping config, re-read and brought up to date
    deals_reapply_remaining: int = 0  # such deals left for the next runs (a bounded batch per run)
    deals_checked_in_crm: int = 0  # linked deals compared with one scan of the CRM's deals (about once a day)
    deals_deleted_in_crm: int = 0  # linked deals newly found deleted in the CRM: reported, never recreated
    skipped_cost: int = 0
    skipped_cancelled: int = 0
    skipped_by_kind: Counter = field(default_factory=Counter)
    quarantined_by_reason: Counter = field(default_factory=Counter)
    quarantine_retried: int = 0
    quarantine_resolved: int = 0
    quarantine_open: dict[str, int] = field(default_factory=dict)
    api_calls: ApiCalls = field(default_factory=dict)  # see `api_calls`
    cursor_before: str | None = None
    cursor_after: str | None = None
    duration_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def add_to(self, name: str, key: str, amount: int = 1) -> None:
        with self._lock:
            getattr(self, name)[key] += amount

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (an XCom value and a state-DB column)."""
        data = {key: value for key, value in self.__dict__.items() if not key.startswith("_")}
        data["skipped_by_kind"] = dict(sorted(self.skipped_by_kind.items()))
        data["quarantined_by_reason"] = dict(sorted(self.quarantined_by_reason.items()))
        return data


def render_summary(summary: dict[str, Any]) -> str:
    """A two-column text table of a summary dict, for task logs and the demo.

    A dict of dicts (`api_calls`) gets one line per key: `sugester: needed 812, made 830, retries 18, ...`."""

    def fmt(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}: {counts(v)}" for k, v in value.items()) or "-"
        if isinstance(value, float):
            return f"{value:.1f}"
        return "-" if value is None else str(value)

    def counts(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        return str(value)

    rows: list[tuple[str, str]] = []
    for key, value in summary.items():
        if isinstance(value, dict) and len(value) > 1:  # one line per entry, so nothing is cut off
            rows += [(key if n == 0 else "", fmt({k: v})) for n, (k, v) in enumerate(value.items())]
        else:
            rows.append((key, fmt(value)))
    width = max(len(key) for key, _ in rows)
    value_width = max(len(value) for _, value in rows)
    line = f"+{'-' * (width + 2)}+{'-' * (value_width + 2)}+"
    body = [f"| {key.ljust(width)} | {value.ljust(value_width)} |" for key, value in rows]
    return "\n".join([line, *body, line])
