"""The assets the DAGs read and write: `fakturownia://<account>/invoices`, `.../clients`,
`sugester://<account>/deals`, `.../clients` (DESIGN.md "Assets and webhooks"), so Airflow's asset graph shows
the integration and a Fakturownia webhook can start the syncs.

The account names are read when DAG files are parsed, where no connection may be looked up (no network or
metadata DB at the top level of a DAG file). They come from Airflow's config, `[fakturownia_sync]
fakturownia_account` and `crm_account` (env `AIRFLOW__FAKTUROWNIA_SYNC__FAKTUROWNIA_ACCOUNT`, ...), default
`default`: the config is local to every component, and all components must agree on it, since the
dag-processor registers the assets and the webhook receiver in the api-server records events on them.
The provider's URI handler (`provider.py`) lower-cases the account and refuses a URI that names no account
or an unknown resource.

Writes to the CRM are plain outlets: nothing is scheduled on the CRM's assets. Writes to Fakturownia go
through the alias `FAKTUROWNIA_WRITES` and are recorded only when a run wrote something there
(`record_fakturownia_writes`): the Fakturownia assets start `fakturownia_invoices_to_deals` and
`fakturownia_clients_sync`, and a plain outlet would emit an event after every run, so the client sync would
start itself again forever and each deal-invoicing run would start both syncs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset, AssetAlias
from airflow.sdk.configuration import conf

from fakturownia_sync.clients_sync import STREAM as CLIENTS_SYNC_STREAM
from fakturownia_sync.deals_to_invoices import STREAM as DEALS_TO_INVOICES_STREAM
from fakturownia_sync_airflow.provider import (
    CONFIG_SECTION,
    DEFAULT_ASSET_ACCOUNT,
    FAKTUROWNIA_CONN_TYPE,
    SUGESTER_CONN_TYPE,
)


def _account(option: str) -> str:
    return (conf.get(CONFIG_SECTION, option, fallback=DEFAULT_ASSET_ACCOUNT) or DEFAULT_ASSET_ACCOUNT).strip()


FAKTUROWNIA_ACCOUNT = _account("fakturownia_account")
CRM_ACCOUNT = _account("crm_account")

FAKTUROWNIA_INVOICES = Asset(f"{FAKTUROWNIA_CONN_TYPE}://{FAKTUROWNIA_ACCOUNT}/invoices")
FAKTUROWNIA_CLIENTS = Asset(f"{FAKTUROWNIA_CONN_TYPE}://{FAKTUROWNIA_ACCOUNT}/clients")
CRM_DEALS = Asset(f"{SUGESTER_CONN_TYPE}://{CRM_ACCOUNT}/deals")
CRM_CLIENTS = Asset(f"{SUGESTER_CONN_TYPE}://{CRM_ACCOUNT}/clients")

# The outlet of tasks that may write to Fakturownia; resolves to FAKTUROWNIA_INVOICES / FAKTUROWNIA_CLIENTS.
FAKTUROWNIA_WRITES = AssetAlias(name="fakturownia_sync_writes_to_fakturownia")

# Per run summary (by its `stream`): the counters that say a run wrote to each Fakturownia asset.
_FAKTUROWNIA_WRITE_COUNTERS: dict[str, tuple[tuple[Asset, tuple[str, ...]], ...]] = {
    CLIENTS_SYNC_STREAM: ((FAKTUROWNIA_CLIENTS, ("created_in_fakturownia", "updated_in_fakturownia")),),
    DEALS_TO_INVOICES_STREAM: (
        (FAKTUROWNIA_INVOICES, ("invoices_created", "invoices_recovered")),
        (FAKTUROWNIA_CLIENTS, ("clients_created",)),
    ),
}


def record_fakturownia_writes(outlet_events: Any, summary: Mapping[str, Any]) -> list[str]:
    """Record an asset event, through `FAKTUROWNIA_WRITES`, on each Fakturownia asset the run wrote to.

    `outlet_events` is the task's context entry of that name; `summary` the run summary. Returns the URIs
    recorded (none when nothing was written, so the syncs scheduled on these assets are not started).
    """
    recorded = []
    for asset, counters in _FAKTUROWNIA_WRITE_COUNTERS.get(str(summary.get("stream")), ()):
        written = sum(int(summary.get(counter) or 0) for counter in counters)
        if written and outlet_events is not None:
            outlet_events[FAKTUROWNIA_WRITES].add(asset, extra={"records_written": written})
            recorded.append(asset.uri)
    return recorded
