"""The sync state, one class with one short transaction per call, composed of one part per table group.

`StateStore` is what every caller holds (`store.method(...)`); each part is a module a reader can take in
at once: `engine` (open, migrate, upsert), `runs` (runs, cursors, backfill windows), `deal_links`,
`client_links` (links, snapshots, mirror, conflicts, review), `claims` (creates claimed on every evidence
key), `quarantine`, `review_decisions` (what people decided in the UI), `integration_checks`, `overview` (what the
integration page shows).
"""

from __future__ import annotations

from fakturownia_sync.state.claims import CreateClaimsStore
from fakturownia_sync.state.client_links import ClientLinksStore
from fakturownia_sync.state.crm_client_mirror import CrmClientMirrorStore
from fakturownia_sync.state.deal_links import DealLinksStore
from fakturownia_sync.state.engine import MIGRATIONS, VERSION_TABLE, default_state_url, utcnow
from fakturownia_sync.state.integration_checks import IntegrationChecksStore
from fakturownia_sync.state.overview import OverviewStore
from fakturownia_sync.state.quarantine import QuarantineStore
from fakturownia_sync.state.review_decisions import ReviewDecisionsStore
from fakturownia_sync.state.runs import RunsStore

__all__ = ["MIGRATIONS", "VERSION_TABLE", "StateStore", "default_state_url", "utcnow"]


class StateStore(
    RunsStore,
    DealLinksStore,
    ClientLinksStore,
    CreateClaimsStore,
    QuarantineStore,
    CrmClientMirrorStore,
    ReviewDecisionsStore,
    IntegrationChecksStore,
    OverviewStore,
):
    """Reading and writing the sync state on SQLite or PostgreSQL."""

    @classmethod
    def open(cls, url: str | None = None) -> StateStore:
        """Connect and bring the schema up to date; a database this code cannot use raises `StateDbError`."""
        store = cls(url or default_state_url())
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store
