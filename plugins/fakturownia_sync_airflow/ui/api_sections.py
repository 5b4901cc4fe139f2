"""The page's sections that the two APIs give: each system's departments with their mapping and use, and the
user pairing. Their reads start together (`ApiReads`) and run while the state DB's sections (`sections`) are
built, so an API that hangs costs the page one read deadline, not one per read. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from fakturownia_sync.config import SyncConfig
from fakturownia_sync.departments import DepartmentMap, UnmappedDepartment
from fakturownia_sync.errors import ApiError
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.ids import as_id
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.users import crm_users, fakturownia_users, pair_users
from fakturownia_sync_airflow.ui.sections import Section

# Departments -----------------------------------------------------------------------------------------------


def _listed(lister: Callable[[], list[dict[str, Any]]], api: str) -> tuple[dict[int, str] | None, str | None]:
    try:
        listed = lister()
    except ApiError as exc:
        return None, f"{api} did not list its departments: {exc.message}"
    names: dict[int, str] = {}
    for item in listed or []:
        department_id = as_id(item.get("id")) if isinstance(item, dict) else None
        if department_id is not None:
            names[department_id] = str(item.get("name") or item.get("shortcut") or f"#{department_id}")
    return names, None


@dataclass
class ApiReads:
    """The page's API reads (each system's departments, the CRM's users), started together before the state DB's
    sections are built: a page over two APIs that hang waits for the slowest read, not for the sum of them. The CRM
    reads go through two clients, so no client is used by two threads at once. None: no client to read with."""

    fakturownia_departments: Future[Any] | None
    crm_departments: Future[Any] | None
    crm_users: Future[Any] | None

    @classmethod
    def start(
        cls,
        pool: Executor,
        fakturownia: FakturowniaClient | None,
        crm: SugesterClient | None,
        crm_for_users: SugesterClient | None,
    ) -> ApiReads:
        return cls(
            pool.submit(fakturownia.departments) if fakturownia else None,
            pool.submit(crm.departments) if crm else None,
            pool.submit(crm_users, crm_for_users) if crm_for_users else None,
        )


def departments_section(config: SyncConfig | None, reads: ApiReads, usage: dict[str, dict[int | None, int]]) -> Section:
    section = Section()
    f_read, c_read = reads.fakturownia_departments, reads.crm_departments
    f_names, f_problem = _listed(f_read.result, "Fakturownia") if f_read else (None, None)
    c_names, c_problem = _listed(c_read.result, "The CRM") if c_read else (None, None)
    section.notes += [p for p in (f_problem, c_problem) if p]
    departments = DepartmentMap(config) if config is not None else None
    if config is not None and not config.department_map:
        section.notes.append(
            "department_map is empty: departments are not synced (nothing department-related is written or held)."
        )

    def side_rows(names: dict[int, str] | None, used: dict[int | None, int], own: str) -> list[dict[str, Any]]:
        known = dict(names or {})
        ids = sorted(set(known) | {i for i in used if i is not None})
        rows = []
        for department_id in ids:
            partner, state = None, "unknown (no valid config)"
            if departments is not None:
                state = "not synced"
                if departments.synced:
                    try:
                        if own == "fakturownia":
                            partner = departments.to_crm(department_id)
                        else:
                            partner = departments.to_fakturownia(department_id)
                        state = "mapped"
                    except UnmappedDepartment:
                        state = "unmapped"
            rows.append(
                {
                    "id": department_id,
                    "name": known.get(department_id, "(not in the list)" if names is not None else "?"),
                    "state": state,
                    "partner": partner,
                    "used_by": used.get(department_id, 0),
                }
            )
        return rows

    f_rows = side_rows(f_names, usage.get("fakturownia", {}), "fakturownia")
    c_rows = side_rows(c_names, usage.get("crm", {}), "crm")
    f_by_id, c_by_id = {r["id"]: r for r in f_rows}, {r["id"]: r for r in c_rows}
    for row in f_rows:
        row["partner_name"] = c_by_id.get(row["partner"], {}).get("name") if row["partner"] else None
    for row in c_rows:
        row["partner_name"] = f_by_id.get(row["partner"], {}).get("name") if row["partner"] else None
    missing = []
    if config is not None:
        for pair in config.department_map:
            if f_names is not None and pair.fakturownia_department_id not in f_names:
                missing.append(f"Fakturownia department {pair.fakturownia_department_id} is mapped but not listed")
            if c_names is not None and pair.crm_department_id not in c_names:
                missing.append(f"CRM department {pair.crm_department_id} is mapped but not listed")
    section.notes += missing
    section.data = {
        "fakturownia": f_rows if f_names is not None or f_rows else None,
        "crm": c_rows if c_names is not None or c_rows else None,
        "no_department": {
            "fakturownia_used_by": usage.get("fakturownia", {}).get(None, 0),
            "crm_used_by": usage.get("crm", {}).get(None, 0),
            "to_crm": config.no_department.crm_department_id if config else None,
            "to_fakturownia": config.no_department.fakturownia_department_id if config else None,
        },
    }
    return section


# Users -----------------------------------------------------------------------------------------------------


def users_section(config: SyncConfig, team: Future[Any]) -> Section:
    """The pairing of `fakturownia_users` with the CRM's users (`team`: the read `ApiReads` started)."""
    own = fakturownia_users(config.fakturownia_users)
    pairing = pair_users(own, team.result())
    notes = []
    if not own:
        notes.append("fakturownia_users in the config Variable lists nobody, so no Fakturownia user can be paired.")
    return Section(data={"rows": pairing.rows(), "counts": pairing.counts()}, notes=notes)
