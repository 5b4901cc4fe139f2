"""The one department rule (działy): what department a client, deal or invoice gets on the other side.

Every writer and every comparison goes through `DepartmentMap`: the client sync (both directions), the
invoices → deals sync (the deal and any CRM client it creates) and the deal → invoice direction. There is
no other translation of a department id anywhere in the engine.

| department on the source side | empty `department_map`      | `department_map` has pairs                     |
|-------------------------------|-----------------------------|------------------------------------------------|
| mapped (in a pair)            | (cannot happen)             | the paired department of the other side        |
| unmapped (in no pair)         | none written, never checked | `UnmappedDepartment`: record held (review /    |
|                               |                             | quarantine `unmapped_department`), no write    |
| no department                 | none written, never checked | `no_department.<other side>_department_id`     |
|                               |                             | (null: no department)                          |

The table is the same in both directions (Fakturownia → CRM uses `to_crm` and
`no_department.crm_department_id`; CRM → Fakturownia uses `to_fakturownia` and
`no_department.fakturownia_department_id`) and the same for clients, invoices → deals and deals → invoices.

**An empty map switches departments off entirely, `no_department` included.** `no_department` is part of
the mapping (it says what "no department" means on each side); applied without the map it would split
records by an accident of data entry: a record with no department would land in the `no_department`
department while one in any department would land in none, and the two-way client merge would need a third,
half-translated rule for the values it compares. So with an empty map nothing department-related is written,
compared or held, by any sync; `no_department` takes effect as soon as one pair is mapped. (To put everything
in one CRM department, map the Fakturownia departments in use and set `no_department` for the rest.)

Each side keeps its own department ids; nothing is compared in a made-up common space, because
`no_department` need not be symmetric (Fakturownia "none" may become CRM department 5 while CRM "none"
becomes Fakturownia department 11). Two values *agree* when either translation takes one to the other.
"""

from __future__ import annotations

from fakturownia_sync.config import SyncConfig
from fakturownia_sync.errors import RecordError

FAKTUROWNIA_SIDE = "Fakturownia"
CRM_SIDE = "CRM"


class UnmappedDepartment(RecordError):
    """The record's department has no partner in `department_map`; the record is held, nothing is written."""

    def __init__(self, side: str, department_id: int, subject: str = "") -> None:
        other = CRM_SIDE if side == FAKTUROWNIA_SIDE else FAKTUROWNIA_SIDE
        message = (
            f"{subject} is in {side} department {department_id}, which department_map does not pair with a "
            f"{other} department"
            if subject
            else f"{side} department {department_id} is not paired with a {other} department in department_map"
        )
        super().__init__("unmapped_department", message)
        self.side = side
        self.department_id = department_id


class DepartmentMap:
    """`department_map` + `no_department` of one config, as the table in this module's docstring says."""

    def __init__(self, config: SyncConfig) -> None:
        self.synced = bool(config.department_map)
        self._to_crm = {p.fakturownia_department_id: p.crm_department_id for p in config.department_map}
        self._to_fakturownia = {p.crm_department_id: p.fakturownia_department_id for p in config.department_map}
        self._none_to_crm = config.no_department.crm_department_id
        self._none_to_fakturownia = config.no_department.fakturownia_department_id

    def pairs(self) -> list[tuple[int, int]]:
        """(Fakturownia department, CRM department) of every pair, in the config's order (for reports)."""
        return list(self._to_crm.items())

    def no_department_targets(self) -> dict[str, int | None]:
        """What a record with no department gets on each side, keyed as in `no_department` (for reports)."""
        return {"crm_department_id": self._none_to_crm, "fakturownia_department_id": self._none_to_fakturownia}

    def to_crm(self, fakturownia_department_id: int | None, subject: str = "") -> int | None:
        """The CRM department for a Fakturownia one (None: write no department).

        Raises `UnmappedDepartment` (naming `subject`, e.g. "invoice 12") for a department in no pair."""
        if not self.synced:
            return None
        if fakturownia_department_id is None:
            return self._none_to_crm
        if fakturownia_department_id not in self._to_crm:
            raise UnmappedDepartment(FAKTUROWNIA_SIDE, fakturownia_department_id, subject)
        return self._to_crm[fakturownia_department_id]

    def to_fakturownia(self, crm_department_id: int | None, subject: str = "") -> int | None:
        """The Fakturownia department for a CRM one (None: no department, or departments not synced).

        Raises `UnmappedDepartment` (naming `subject`, e.g. "deal 7") for a department in no pair."""
        if not self.synced:
            return None
        if crm_department_id is None:
            return self._none_to_fakturownia
        if crm_department_id not in self._to_fakturownia:
            raise UnmappedDepartment(CRM_SIDE, crm_department_id, subject)
        return self._to_fakturownia[crm_department_id]

    def check(self, fakturownia_department_id: int | None, crm_department_id: int | None) -> None:
        """Raise `UnmappedDepartment` when either value cannot be translated (never with an empty map)."""
        self.to_crm(fakturownia_department_id)
        self.to_fakturownia(crm_department_id)

    def agree(self, fakturownia_department_id: int | None, crm_department_id: int | None) -> bool:
        """Whether a linked pair's departments already say the same thing (always, with an empty map)."""
        if not self.synced:
            return True
        try:
            if self.to_crm(fakturownia_department_id) == crm_department_id:
                return True
        except UnmappedDepartment:
            pass
        try:
            return self.to_fakturownia(crm_department_id) == fakturownia_department_id
        except UnmappedDepartment:
            return False
