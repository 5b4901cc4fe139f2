"""What becomes of one record whose handling failed: the one rule of both record streams.

Invoices → deals (`invoice_deal`) and deals → invoices (`deals_to_invoices`) handle records one at a time, and
DESIGN.md "Nothing is lost" asks the same of both, so it is written once, here:

| raised while handling                 | becomes                                                          |
|---------------------------------------|------------------------------------------------------------------|
| `RecordDeferred`                      | left for a later run (`deals_deferred`); the run ends incomplete |
| `RecordError`                         | quarantined with its reason                                      |
| `ApiRejected` (4xx, error in a 200)   | quarantined as `<api>_rejected` with the API's message           |
| `ApiAuthError`, `ApiUnavailable`      | raised: the run fails, Airflow retries it                        |
| anything else                         | quarantined as `unexpected_error`, message redacted, logged      |
| nothing (the record is done)          | its open quarantine entry, if any, is resolved                   |

A record without an id gets an entry of its own (`no-id-<payload hash>`), never one shared "None" entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fakturownia_sync.deal_mapping import payload_hash
from fakturownia_sync.errors import ApiAuthError, ApiRejected, ApiUnavailable, RecordDeferred, RecordError
from fakturownia_sync.redaction import redact
from fakturownia_sync.state import StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordStream:
    """One stream's side of the rule: where its quarantine lives and how its run counts."""

    kind: str  # what a record is called in log lines: "invoice", "deal"
    stream: str  # the quarantine's stream
    store: StateStore
    count: Callable[[str], None]  # adds one to a counter of the run summary (thread-safe where the run is threaded)
    count_reason: Callable[[str], None]  # adds one to the run summary's `quarantined_by_reason`
    secrets: tuple[str, ...]  # redacted from an unexpected error's message
    fingerprint: Callable[[], str]  # the config fingerprint stored with an entry (`quarantine_retry`)
    # Only the invoices stream has a dry run: it counts what it would quarantine or resolve and writes no entry.
    # Deal invoicing has none, so it always writes.
    dry_run: bool = False


def quarantine_key(raw: dict[str, Any]) -> str:
    """The record's quarantine id: its own id, or one made of its payload when it has none."""
    record_id = raw.get("id")
    if record_id in (None, ""):
        return "no-id-" + payload_hash(raw)[:16]
    return str(record_id)


def handle_record(stream: RecordStream, raw: dict[str, Any], work: Callable[[], bool]) -> None:
    """Run `work` (True once the record is fully handled); turn what it raises into the table's outcome."""
    try:
        done = work()
    except RecordDeferred as exc:
        log.info("%s; left for a later run", exc)
        stream.count("deals_deferred")
        return
    except RecordError as exc:
        quarantine(stream, raw, exc.reason, exc.message)
        return
    except ApiRejected as exc:
        quarantine(stream, raw, f"{exc.api.lower()}_rejected", exc.message)
        return
    except (ApiAuthError, ApiUnavailable):
        raise
    except Exception as exc:
        log.exception("%s %s: unexpected error", stream.kind, raw.get("id"))
        quarantine(stream, raw, "unexpected_error", redact(f"{type(exc).__name__}: {exc}", stream.secrets))
        return
    if done and not stream.dry_run and stream.store.resolve_quarantine(stream.stream, quarantine_key(raw)):
        stream.count("quarantine_resolved")


def quarantine(stream: RecordStream, raw: dict[str, Any], reason: str, message: str) -> None:
    """Put the record aside with its reason and payload; the run carries on."""
    record_id = quarantine_key(raw)
    log.warning("%s %s quarantined: %s: %s", stream.kind, record_id, reason, message)
    stream.count_reason(reason)
    if not stream.dry_run:
        stream.store.quarantine(stream.stream, record_id, reason, message, raw, stream.fingerprint())
