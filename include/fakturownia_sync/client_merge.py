"""The field-by-field three-way merge of a linked client pair against its last synced snapshot.

The snapshot keeps, per side, each field's comparable value as last seen or written by the sync
(`{"fakturownia": {...}, "crm": {...}}`). Keeping one per side, rather than one merged value, is what
stops echoes: after we write a field, the value the server stored (in whatever spelling it keeps) becomes
that side's baseline, so the next run sees no change on either side and writes nothing.

Per field:

| Fakturownia vs snapshot | CRM vs snapshot | sides agree? | result                                        |
|-------------------------|-----------------|--------------|-----------------------------------------------|
| any                     | any             | yes          | nothing to write                              |
| changed                 | unchanged       | no           | Fakturownia's value is written to the CRM     |
| unchanged               | changed         | no           | the CRM's value is written to Fakturownia     |
| changed                 | changed         | no           | conflict: `conflict_policy` picks; recorded   |
| unchanged               | unchanged       | no           | left alone (they differed when first linked)  |

A pair linked for the first time has no snapshot: an empty field takes the other side's value, and values
that differ are left as each side has them (a first contact never overwrites user data by guess). The
same holds for a field the snapshot does not know yet (one added to the mapping later).
`newest_wins` compares the records' `updated_at`; a tie or a missing time goes to Fakturownia, the
system of record for invoicing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fakturownia_sync.client_fields import SYNCED_FIELDS

Side = Literal["fakturownia", "crm"]
Policy = Literal["newest_wins", "fakturownia_wins", "crm_wins"]
FAKTUROWNIA: Side = "fakturownia"
CRM: Side = "crm"


@dataclass(frozen=True)
class FieldConflict:
    field: str
    fakturownia_value: Any
    crm_value: Any
    fakturownia_base: Any
    crm_base: Any
    winner: Side


@dataclass
class MergePlan:
    """What to write where (field → source side), and the conflicts settled on the way."""

    to_fakturownia: list[str] = field(default_factory=list)
    to_crm: list[str] = field(default_factory=list)
    conflicts: list[FieldConflict] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.to_fakturownia or self.to_crm)


def _blank(value: Any) -> bool:
    return value is None or value == ""


def winner_of(policy: Policy, fakturownia_updated: datetime | None, crm_updated: datetime | None) -> Side:
    if policy == "fakturownia_wins":
        return FAKTUROWNIA
    if policy == "crm_wins":
        return CRM
    if fakturownia_updated is not None and crm_updated is not None and crm_updated > fakturownia_updated:
        return CRM
    return FAKTUROWNIA


def plan_merge(
    fakturownia: dict[str, Any],
    crm: dict[str, Any],
    snapshot: dict[str, Any] | None,
    *,
    policy: Policy,
    fakturownia_updated: datetime | None,
    crm_updated: datetime | None,
    agree: Callable[[str, Any, Any], bool],
    fields: tuple[str, ...] = SYNCED_FIELDS,
) -> MergePlan:
    """Decide the writes for one pair. `fakturownia`/`crm` are comparable views (`client_view`)."""
    plan = MergePlan()
    base_f = (snapshot or {}).get(FAKTUROWNIA)
    base_c = (snapshot or {}).get(CRM)
    first_contact = not isinstance(base_f, dict) or not isinstance(base_c, dict)
    for name in fields:
        value_f, value_c = fakturownia.get(name), crm.get(name)
        if agree(name, value_f, value_c):
            continue
        if first_contact or name not in base_f or name not in base_c:
            if _blank(value_f) and not _blank(value_c):
                plan.to_fakturownia.append(name)
            elif _blank(value_c) and not _blank(value_f):
                plan.to_crm.append(name)
            continue
        changed_f = base_f[name] != value_f
        changed_c = base_c[name] != value_c
        if changed_f and not changed_c:
            plan.to_crm.append(name)
        elif changed_c and not changed_f:
            plan.to_fakturownia.append(name)
        elif changed_f and changed_c:
            winner = winner_of(policy, fakturownia_updated, crm_updated)
            plan.conflicts.append(FieldConflict(name, value_f, value_c, base_f.get(name), base_c.get(name), winner))
            (plan.to_crm if winner == FAKTUROWNIA else plan.to_fakturownia).append(name)
    return plan


def snapshot_of(fakturownia: dict[str, Any], crm: dict[str, Any]) -> dict[str, Any]:
    """The snapshot to store once both sides hold these (comparable) values."""
    return {FAKTUROWNIA: dict(fakturownia), CRM: dict(crm)}
