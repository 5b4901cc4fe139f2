"""The three-way, field-by-field merge of a linked client pair (pure: no HTTP, no state DB)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fakturownia_sync.client_fields import client_view, comparable
from fakturownia_sync.client_merge import plan_merge, snapshot_of
from fakturownia_sync.config import load_config
from fakturownia_sync.departments import DepartmentMap, UnmappedDepartment

EARLY, LATE = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)
BASE = {"name": "Budmax Sp. z o.o.", "tax_no": "PL 526-104-08-28", "email": "biuro@budmax.pl", "city": "Kraków"}


def equal(_field: str, a: object, b: object) -> bool:
    return a == b


def plan(fakturownia: dict, crm: dict, snapshot: dict | None, policy: str = "newest_wins", **times: datetime):
    return plan_merge(
        client_view(fakturownia),
        client_view(crm),
        snapshot,
        policy=policy,  # type: ignore[arg-type]
        fakturownia_updated=times.get("f"),
        crm_updated=times.get("c"),
        agree=equal,
    )


def synced() -> dict:
    crm = {**BASE, "tax_no": "5261040828", "email": "BIURO@budmax.pl "}
    return snapshot_of(client_view(BASE), client_view(crm))


def test_spellings_of_one_value_are_no_difference() -> None:
    crm = {**BASE, "tax_no": "5261040828", "email": " BIURO@budmax.pl", "city": " Kraków "}
    assert plan(BASE, crm, synced()).empty
    assert comparable("tax_no", "PL 526 104 08 28") == comparable("tax_no", "526-104-08-28") == "5261040828"


def test_a_field_changed_on_one_side_flows_to_the_other() -> None:
    result = plan({**BASE, "city": "Gdańsk"}, {**BASE, "tax_no": "5261040828", "phone": "600 100 200"}, synced())
    assert result.to_crm == ["city"] and result.to_fakturownia == ["phone"] and not result.conflicts


@pytest.mark.parametrize(
    ("policy", "f_time", "c_time", "winner"),
    [
        ("newest_wins", EARLY, LATE, "crm"),
        ("newest_wins", LATE, EARLY, "fakturownia"),
        ("newest_wins", None, LATE, "fakturownia"),  # unknown time: Fakturownia, the system of record
        ("fakturownia_wins", EARLY, LATE, "fakturownia"),
        ("crm_wins", LATE, EARLY, "crm"),
    ],
)
def test_both_sides_changed_is_settled_by_policy_and_reported(policy, f_time, c_time, winner) -> None:
    result = plan({**BASE, "city": "Gdańsk"}, {**BASE, "city": "Poznań"}, synced(), policy, f=f_time, c=c_time)
    [conflict] = result.conflicts
    assert (conflict.field, conflict.fakturownia_value, conflict.crm_value) == ("city", "Gdańsk", "Poznań")
    assert conflict.winner == winner
    assert (result.to_crm if winner == "fakturownia" else result.to_fakturownia) == ["city"]


def test_both_sides_changed_alike_is_no_conflict() -> None:
    result = plan({**BASE, "city": "Gdańsk"}, {**BASE, "city": " Gdańsk"}, synced())
    assert result.empty and not result.conflicts


def test_first_contact_fills_blanks_and_keeps_differences() -> None:
    result = plan(
        {**BASE, "phone": "22 111 22 33"}, {**BASE, "name": "BUDMAX spółka z o.o.", "street": "Długa 1"}, None
    )
    assert result.to_crm == ["phone"] and result.to_fakturownia == ["street"] and not result.conflicts


def test_departments_agree_through_the_map_and_no_department_rule() -> None:
    config = load_config(
        {
            "department_map": [{"fakturownia_department_id": 11, "crm_department_id": 1}],
            "no_department": {"crm_department_id": 5, "fakturownia_department_id": None},
        }
    )
    departments = DepartmentMap(config)
    assert departments.agree(11, 1) and departments.agree(None, 5) and not departments.agree(11, 5)
    assert departments.to_crm(None) == 5 and departments.to_fakturownia(None) is None
    with pytest.raises(UnmappedDepartment):
        departments.to_crm(13)
    assert DepartmentMap(load_config({})).agree(11, 3)  # an empty map: departments are not synced
