"""The sync-state database: links between records of the two systems, cursors, runs and quarantine."""

from fakturownia_sync.state.store import ClientLink, DealLink, QuarantineEntry, StateStore, default_state_url

__all__ = ["ClientLink", "DealLink", "QuarantineEntry", "StateStore", "default_state_url"]
