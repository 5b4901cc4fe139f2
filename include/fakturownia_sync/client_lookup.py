"""Finding a Fakturownia client by its `external_id` (the CRM id we set when creating it).

`GET /clients.json?external_id=X` is documented to return an array, and a third-party live test expects
exactly the matching client. Whether the filter is always honoured, and whether `external_id` is unique,
is not documented; so the answer is filtered again here and every client found is returned (the caller
treats more than one as ambiguous). If the server ignored the filter, the created client is still found:
it was updated after the cursor, so the next incremental sweep reads it and the matcher pairs it by
its external id.
"""

from __future__ import annotations

from typing import Any

from fakturownia_sync.fakturownia_client import FakturowniaClient


def fakturownia_clients_by_external_id(client: FakturowniaClient, external_id: str) -> list[dict[str, Any]]:
    answer = client.transport.request("GET", "/clients.json", params={"external_id": external_id, "per_page": 100})
    return [
        record
        for record in answer or []
        if isinstance(record, dict) and str(record.get("external_id") or "").strip() == external_id
    ]
