"""Departments (działy) of a client on each side, translated through `department_map` and `no_department`.

Each side keeps its own department ids; nothing is compared in a made-up common space, because
`no_department` need not be symmetric (Fakturownia "none" may become CRM department 5 while CRM "none"
becomes Fakturownia department 11). Two values *agree* when either translation takes one to the other.
An empty `department_map` means departments are not synced at all.
"""

from __future__ import annotations

from fakturownia_sync.config import SyncConfig
from fakturownia_sync.errors import RecordError


class UnmappedDepartment(RecordError):
    """The record's department has no partner in `department_map`; the record goes to review."""

    def __init__(self, side: str, department_id: int) -> None:
        super().__init__(
            "unmapped_department",
            f"{side} department {department_id} is not paired with a department of the other side in department_map",
        )
        self.side = side
        self.department_id = department_id


class DepartmentMap:
    def __init__(self, config: SyncConfig) -> None:
        self.synced = bool(config.department_map)
        self._to_crm = {p.fakturownia_department_id: p.crm_department_id for p in config.department_map}
        self._to_fakturownia = {p.crm_department_id: p.fakturownia_department_id for p in config.department_map}
        self._none_to_crm = config.no_department.crm_department_id
        self._none_to_fakturownia = config.no_department.fakturownia_department_id

    def to_crm(self, fakturownia_department_id: int | None) -> int | None:
        """The CRM department for a Fakturownia one; raises `UnmappedDepartment`."""
        if fakturownia_department_id is None:
            return self._none_to_crm
        if fakturownia_department_id not in self._to_crm:
            raise UnmappedDepartment("Fakturownia", fakturownia_department_id)
        return self._to_crm[fakturownia_department_id]

    def to_fakturownia(self, crm_department_id: int | None) -> int | None:
        """The Fakturownia department for a CRM one; raises `UnmappedDepartment`."""
        if crm_department_id is None:
            return self._none_to_fakturownia
        if crm_department_id not in self._to_fakturownia:
            raise UnmappedDepartment("CRM", crm_department_id)
        return self._to_fakturownia[crm_department_id]

    def check(self, fakturownia_department_id: int | None, crm_department_id: int | None) -> None:
        """Raise `UnmappedDepartment` when either value cannot be translated."""
        if self.synced:
            self.to_crm(fakturownia_department_id)
            self.to_fakturownia(crm_department_id)

    def agree(self, fakturownia_department_id: int | None, crm_department_id: int | None) -> bool:
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
