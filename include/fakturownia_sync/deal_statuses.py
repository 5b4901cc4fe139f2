"""CRM deal statuses named in the config, resolved to the CRM's own ids once per run.

`deal_invoicing.statuses` and `deal_invoicing.invoiced_status` take names (what a person sees in the CRM) or
ids. The CRM's deal statuses (`GET /app/statuses.json`, kind deal) are read once and every configured value is
resolved against them; a name the CRM does not have fails the run's first task with one sentence naming it,
instead of silently invoicing nothing.
"""

from __future__ import annotations

from fakturownia_sync.config import SyncConfig
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.ids import as_id
from fakturownia_sync.sugester_client import SugesterClient


def resolve_statuses(crm: SugesterClient, config: SyncConfig) -> tuple[dict[int, str], int | None]:
    """The CRM deal status ids (→ names) that mark a deal for invoicing, and the invoiced status id or None.

    Raises `ConfigError` naming the first configured status the CRM does not have."""
    settings = config.deal_invoicing
    known = [status for status in crm.deal_statuses() if as_id(status.get("id")) is not None]
    by_id = {as_id(status["id"]): str(status.get("name") or "") for status in known}
    by_name = {name.casefold(): status_id for status_id, name in by_id.items()}

    def resolve(ref: str | int, key: str) -> int:
        if isinstance(ref, int):
            if ref in by_id:
                return ref
        elif ref.strip().casefold() in by_name:
            return by_name[ref.strip().casefold()]
        names = ", ".join(repr(name) for name in sorted(by_id.values())) or "none"
        raise ConfigError(
            f"Variable 'fakturownia_sync_config' key '{key}': the CRM has no deal status {ref!r} "
            f"(its deal statuses: {names})."
        )

    wanted = {resolve(ref, "deal_invoicing.statuses"): "" for ref in settings.statuses}
    invoiced = None
    if settings.invoiced_status is not None:
        invoiced = resolve(settings.invoiced_status, "deal_invoicing.invoiced_status")
    return {status_id: by_id[status_id] for status_id in wanted}, invoiced
