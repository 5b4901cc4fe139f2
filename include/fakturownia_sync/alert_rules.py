"""When the lists a person must work through have grown enough to tell someone (config key `alerts`).

Two lists grow when something needs a person: the quarantine (records a run could not process, per stream)
and the client review list. Each run's summary, stored with the run (`sync_runs`), records how many entries
were open when it ended: `quarantine_open` (by reason) and `review_total`. Growth is that number at the end
of the run just finished minus the same number at the end of the previous DAG run of the stream (a retry of
the same DAG run is not "previous": its entries are the same ones). A stream's first run grows from zero.

An alert is due when the growth is at least the threshold (`alerts.quarantine_growth`, `alerts.review_growth`;
None: never). Each finished run is judged once, by the task that finished it: a later task of the same DAG
run, and every task of other DAG runs, find nothing new to judge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fakturownia_sync.clients_sync import STREAM as CLIENTS_SYNC
from fakturownia_sync.config import VARIABLE_NAME, Alerts, load_config
from fakturownia_sync.deals_to_invoices import STREAM as DEALS_TO_INVOICES
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.invoices_to_deals import STREAM as INVOICES_TO_DEALS

# The streams whose runs record open lists: quarantine (invoices → deals, deals → invoices), review (clients).
WATCHED_STREAMS = (INVOICES_TO_DEALS, DEALS_TO_INVOICES, CLIENTS_SYNC)
RUNS_LOOKED_AT = 10  # per stream: the newest run, its retries, and the previous DAG run's run

QUARANTINE = "quarantine"
REVIEW = "review"
_LABELS = {QUARANTINE: "open quarantine entries", REVIEW: "open client review entries"}


@dataclass(frozen=True)
class Growth:
    """One list of one stream that grew past its threshold in one run."""

    stream: str
    kind: str  # QUARANTINE or REVIEW
    before: int
    now: int
    threshold: int
    by_reason: dict[str, int]

    @property
    def grown(self) -> int:
        return self.now - self.before

    def text(self) -> str:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.by_reason.items()))
        return (
            f"{self.stream}: {_LABELS[self.kind]} grew by {self.grown} ({self.before} → {self.now}; alert at "
            f"{self.threshold} or more){f'; open by reason: {reasons}' if reasons else ''}."
        )


def alerts_alone(raw: str | dict[str, Any] | None) -> Alerts:
    """The `alerts` key of the config Variable (`raw`, as `load_config` takes it) read on its own, for a Variable
    whose other keys do not validate: every run then fails on it, which is the very thing to tell someone. Raises
    `ConfigError` (naming the key, as `load_config` does) when `alerts` itself cannot be read."""
    parsed: Any = raw
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Variable '{VARIABLE_NAME}' is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        return load_config(parsed).alerts  # None or empty: the defaults; anything else: its own error
    return load_config({"alerts": parsed.get("alerts", {})}).alerts


def open_entries(summary: dict[str, Any] | None) -> dict[str, int]:
    """The open entries a run's summary recorded, by list: {"quarantine": n} and/or {"review": n}."""
    counts: dict[str, int] = {}
    if not isinstance(summary, dict):
        return counts
    if isinstance(summary.get("quarantine_open"), dict):
        counts[QUARANTINE] = sum(int(n) for n in summary["quarantine_open"].values())
    if isinstance(summary.get("review_total"), int):
        counts[REVIEW] = summary["review_total"]
    return counts


def _by_reason(summary: dict[str, Any], kind: str) -> dict[str, int]:
    found = summary.get("quarantine_open" if kind == QUARANTINE else "review_by_reason")
    return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _previous_count(earlier: Sequence[dict[str, Any]], kind: str) -> int:
    """The open entries of `kind` at the end of the newest earlier run that recorded them; 0 when none did."""
    for run in earlier:
        counts = open_entries(run.get("summary"))
        if kind in counts:
            return counts[kind]
    return 0


def growth_alerts(
    stream: str, runs: Sequence[dict[str, Any]], alerts: Alerts, *, owner: str, finished_since: datetime
) -> list[Growth]:
    """The alerts due for `stream`, whose runs (`sync_runs` rows, newest first) are given, when its newest run
    belongs to DAG run `owner` and finished at or after `finished_since` (the judging task's start)."""
    thresholds = {QUARANTINE: alerts.quarantine_growth, REVIEW: alerts.review_growth}
    if not runs:
        return []
    latest = runs[0]
    finished = latest.get("finished_at")
    if latest.get("owner") != owner or finished is None or finished < finished_since:
        return []
    summary = latest.get("summary") or {}
    earlier = [run for run in runs[1:] if run.get("owner") != owner]
    due = []
    for kind, now in open_entries(summary).items():
        threshold = thresholds[kind]
        if threshold is None:
            continue
        before = _previous_count(earlier, kind)
        if now - before >= threshold:
            due.append(Growth(stream, kind, before, now, threshold, _by_reason(summary, kind)))
    return due
