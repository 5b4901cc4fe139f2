"""The sync-state database: links between records of the two systems, cursors, runs, claims and quarantine."""

from fakturownia_sync.state.claims import ClaimAttempt, CreateClaim
from fakturownia_sync.state.client_links import ClientLink
from fakturownia_sync.state.deal_links import DealLink
from fakturownia_sync.state.engine import default_state_url
from fakturownia_sync.state.errors import StateDbError, StateDbPathError, StateDbTooNew, StateDbUnreachable
from fakturownia_sync.state.quarantine import QuarantineEntry
from fakturownia_sync.state.store import StateStore

__all__ = [
    "ClaimAttempt",
    "ClientLink",
    "CreateClaim",
    "DealLink",
    "QuarantineEntry",
    "StateDbError",
    "StateDbPathError",
    "StateDbTooNew",
    "StateDbUnreachable",
    "StateStore",
    "default_state_url",
]
