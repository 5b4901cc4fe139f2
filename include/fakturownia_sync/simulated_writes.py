"""API clients whose reads go out and whose writes are answered locally: what a dry run runs the real code with.

A dry run that follows its own simplified path drifts from the real run (it once predicted 3.5x the client
creates the real run made: it skipped the client sync's matching, and every window counted its own would-be
creates). So a dry backfill runs the very code of the real one, against a scratch copy of the state DB and
with these clients: every read is sent, every write is answered here as the API answers it (the record
sent, with a new id) and counted, never sent. The counts are then the real run's by construction, as long
as the APIs accept what the real run would send.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.ids import as_id
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.transport import ApiTransport

SIMULATED_IDS_FROM = 10**15  # far above any real id, so a simulated record is never mistaken for a real one


class SimulatedWritesTransport:
    """Wraps an `ApiTransport`: GETs are sent through it; POST/PUT/PATCH/DELETE are answered here."""

    def __init__(self, transport: ApiTransport) -> None:
        self._transport = transport
        self._ids = itertools.count(SIMULATED_IDS_FROM)
        self._lock = threading.Lock()
        self.simulated: Counter = Counter()  # "POST /app/deals.json" → how many

    def __getattr__(self, name: str) -> Any:  # account, calls, retries, budget, ...: the real transport's
        return getattr(self._transport, name)

    def request(self, method: str, path: str, *, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        method = method.upper()
        if method == "GET":
            return self._transport.request(method, path, body=body, **kwargs)
        fields = next((value for value in (body or {}).values() if isinstance(value, dict)), {})
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            if method == "POST":
                record_id, kind = next(self._ids), "POST " + path
            else:
                record_id, kind = _id_in(path), f"{method} {path.rsplit('/', 1)[0]}/<id>"
            self.simulated[kind] += 1
        return {**fields, "id": record_id, "updated_at": now} if method != "DELETE" else None


def _id_in(path: str) -> int | None:
    stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
    return as_id(stem)


def simulated_clients(fakturownia: FakturowniaClient, crm: SugesterClient) -> tuple[FakturowniaClient, SugesterClient]:
    """The same accounts, reading for real and writing nowhere."""
    return (
        FakturowniaClient(SimulatedWritesTransport(fakturownia.transport)),  # type: ignore[arg-type]
        SugesterClient(SimulatedWritesTransport(crm.transport)),  # type: ignore[arg-type]
    )


def simulated_writes(*clients: FakturowniaClient | SugesterClient) -> dict[str, int]:
    """What the dry run would have written, by API and endpoint."""
    found: Counter = Counter()
    for client in clients:
        transport = client.transport
        if isinstance(transport, SimulatedWritesTransport):
            for kind, count in transport.simulated.items():
                found[f"{client.account.api} {kind}"] += count
    return dict(sorted(found.items()))
