"""When a quarantined record is tried again: one rule for every stream (invoices, deals).

A record is put aside with the config fingerprint it failed under and the time it was last seen. It is tried
again at once when the record itself changed (its `updated_at` differs from the stored copy's), the config
changed (e.g. a department was mapped) or a person asked for it in the UI, and otherwise every
`quarantine_retry_minutes` (a client card fixed, a problem on the other side gone). Between those, meeting
the unchanged record again costs nothing, so a run with nothing new stays cheap however large the quarantine.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fakturownia_sync.config import SyncConfig
from fakturownia_sync.state import QuarantineEntry


def retry_due(entry: QuarantineEntry, config: SyncConfig, now: datetime) -> bool:
    """Asked for in the UI, the config changed since the entry was made, or it waited `quarantine_retry_minutes`."""
    due_before = now - timedelta(minutes=config.quarantine_retry_minutes)
    return (
        entry.retry_requested_at is not None
        or entry.config_fingerprint != config.fingerprint()
        or entry.last_seen_at <= due_before
    )


def nothing_new(entry: QuarantineEntry, record: dict[str, Any], config: SyncConfig, now: datetime) -> bool:
    """The sweep meets this quarantined record again unchanged, and its retry is not due: skip it."""
    unchanged = isinstance(entry.payload, dict) and entry.payload.get("updated_at") == record.get("updated_at")
    return unchanged and not retry_due(entry, config, now)
