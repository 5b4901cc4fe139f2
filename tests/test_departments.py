"""The one department rule (`DepartmentMap`): a test per cell of the table in `departments.py` and the
README's "Departments", then the two syncs against the sandbox agreeing on it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakturownia_sync.config import SyncConfig, load_config
from fakturownia_sync.departments import DepartmentMap, UnmappedDepartment
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import external_ids_of
from sandbox.process import SandboxProcess
from tests.clients_harness import clients_of, make_clients_sync
from tests.sync_harness import demo_config, make_sync

ENGINE = Path(__file__).resolve().parents[1] / "include" / "fakturownia_sync"

MAPPED = load_config(
    {
        "department_map": [
            {"fakturownia_department_id": 11, "crm_department_id": 1},
            {"fakturownia_department_id": 12, "crm_department_id": 2},
        ],
        "no_department": {"crm_department_id": 2, "fakturownia_department_id": 11},
    }
)
MAPPED_NULL_NONE = load_config({"department_map": [{"fakturownia_department_id": 11, "crm_department_id": 1}]})
EMPTY_WITH_NO_DEPARTMENT = load_config({"no_department": {"crm_department_id": 2, "fakturownia_department_id": 11}})


# Empty map: departments are off, `no_department` included, both directions -------------------------------


@pytest.mark.parametrize("value", [None, 11, 13])
def test_empty_map_writes_no_department_to_the_crm_whatever_the_source(value: int | None) -> None:
    assert DepartmentMap(EMPTY_WITH_NO_DEPARTMENT).to_crm(value) is None


@pytest.mark.parametrize("value", [None, 1, 3])
def test_empty_map_writes_no_department_to_fakturownia_whatever_the_source(value: int | None) -> None:
    assert DepartmentMap(EMPTY_WITH_NO_DEPARTMENT).to_fakturownia(value) is None


def test_empty_map_never_holds_a_record_and_never_compares() -> None:
    departments = DepartmentMap(EMPTY_WITH_NO_DEPARTMENT)
    assert not departments.synced
    departments.check(13, 3)  # would be unmapped on both sides with a map: no error
    assert departments.agree(11, 3) and departments.agree(None, 7) and departments.agree(12, None)


# Mapped department: the pair, both directions -----------------------------------------------------------


def test_mapped_department_goes_to_its_pair_in_the_crm() -> None:
    assert DepartmentMap(MAPPED).to_crm(11) == 1 and DepartmentMap(MAPPED).to_crm(12) == 2


def test_mapped_department_goes_to_its_pair_in_fakturownia() -> None:
    assert DepartmentMap(MAPPED).to_fakturownia(1) == 11 and DepartmentMap(MAPPED).to_fakturownia(2) == 12


def test_mapped_pairs_agree_and_others_do_not() -> None:
    departments = DepartmentMap(MAPPED)
    assert departments.agree(11, 1) and departments.agree(12, 2)
    assert not departments.agree(11, 2) and not departments.agree(13, 1)


# Unmapped department: held with `unmapped_department`, both directions -------------------------------------


def test_unmapped_fakturownia_department_is_held_naming_the_record() -> None:
    with pytest.raises(UnmappedDepartment) as info:
        DepartmentMap(MAPPED).to_crm(13, "invoice 501")
    assert info.value.reason == "unmapped_department"
    assert info.value.message == (
        "invoice 501 is in Fakturownia department 13, which department_map does not pair with a CRM department"
    )


def test_unmapped_crm_department_is_held() -> None:
    with pytest.raises(UnmappedDepartment) as info:
        DepartmentMap(MAPPED).to_fakturownia(3)
    assert (info.value.side, info.value.department_id) == ("CRM", 3)
    assert "CRM department 3 is not paired with a Fakturownia department" in info.value.message


@pytest.mark.parametrize(("fakturownia", "crm"), [(13, 1), (11, 3)])
def test_check_refuses_a_pair_with_an_unmapped_side(fakturownia: int, crm: int) -> None:
    with pytest.raises(UnmappedDepartment):
        DepartmentMap(MAPPED).check(fakturownia, crm)


# No department: `no_department` of the other side, both directions ---------------------------------------


def test_no_department_in_fakturownia_gets_no_department_crm_id() -> None:
    assert DepartmentMap(MAPPED).to_crm(None) == 2
    assert DepartmentMap(MAPPED_NULL_NONE).to_crm(None) is None  # null: none


def test_no_department_in_the_crm_gets_no_department_fakturownia_id() -> None:
    assert DepartmentMap(MAPPED).to_fakturownia(None) == 11
    assert DepartmentMap(MAPPED_NULL_NONE).to_fakturownia(None) is None  # null: none


def test_no_department_agrees_with_its_translation_either_way() -> None:
    departments = DepartmentMap(MAPPED)
    assert departments.agree(None, 2)  # Fakturownia none → CRM 2
    assert departments.agree(11, None)  # CRM none → Fakturownia 11
    assert not departments.agree(None, 1)
    DepartmentMap(MAPPED).check(None, None)


# One rule: no other module translates departments ----------------------------------------------------------


def test_no_engine_module_but_the_department_rule_reads_the_department_settings() -> None:
    readers = {
        path.name
        for path in ENGINE.rglob("*.py")
        if re.search(r"\.(department_map|no_department)\b", path.read_text(encoding="utf-8"))
    }
    assert readers <= {"departments.py"}, readers
    assert not hasattr(SyncConfig, "crm_department_for")


# The two syncs against the sandbox ------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=8, clients=80, invoices=300, crm_clients=10) as running:
        yield running


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def crm_copies(sandbox: SandboxProcess) -> dict[int, dict]:
    """CRM clients created from a Fakturownia client, by that client's id."""
    return {
        int(source): client
        for client in sandbox.dump("sugester")["clients"]
        if (source := external_ids_of(client).get("fakturownia_client_id"))
    }


def test_clients_created_by_the_invoice_sync_and_by_the_client_sync_get_the_same_department(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    config = demo_config(department_map=[], no_department={"crm_department_id": 2, "fakturownia_department_id": 11})
    make_sync(sandbox, sqlite_store, config).run()
    by_invoices = crm_copies(sandbox)
    make_clients_sync(sandbox, sqlite_store, config).run()
    by_clients = {f_id: c for f_id, c in crm_copies(sandbox).items() if f_id not in by_invoices}
    f_clients = clients_of(sandbox, "fakturownia")

    def departments(created: dict[int, dict]) -> set:
        return {c.get("department_id") for f_id, c in created.items() if f_clients[f_id]["department_id"] is None}

    assert departments(by_invoices) and departments(by_clients)  # both syncs created such clients
    assert departments(by_invoices) == departments(by_clients) == {None}
    deal_departments = {deal.get("department_id") for deal in sandbox.dump("sugester")["deals"]}
    assert deal_departments == {None}  # an empty map writes no department on deals either


def test_a_client_in_an_unmapped_department_is_held_by_the_invoice_sync_as_by_the_client_sync(
    sandbox: SandboxProcess, sqlite_store: StateStore
) -> None:
    config = demo_config(
        department_map=[
            {"fakturownia_department_id": 11, "crm_department_id": 1},
            {"fakturownia_department_id": 12, "crm_department_id": 2},
        ]
    )
    f_clients = clients_of(sandbox, "fakturownia")
    unmapped = {f_id for f_id, client in f_clients.items() if client["department_id"] == 13}
    invoices = sandbox.dump("fakturownia")["invoices"]
    held_invoices = {
        invoice["id"]
        for invoice in invoices
        if invoice.get("client_id") in unmapped and invoice.get("department_id") in (11, 12, None)
    }

    summary = make_sync(sandbox, sqlite_store, config).run()
    assert not unmapped & set(crm_copies(sandbox))  # the invoice sync created none of them
    quarantined = {int(entry.record_id): entry for entry in sqlite_store.open_quarantine("invoices_to_deals")}
    client_held = {i for i, entry in quarantined.items() if entry.message.startswith("the client of invoice")}
    assert client_held and client_held <= held_invoices
    assert {quarantined[i].reason for i in client_held} == {"unmapped_department"}
    assert summary["quarantined_by_reason"]["unmapped_department"] >= len(client_held)

    make_clients_sync(sandbox, sqlite_store, config).run()
    assert not unmapped & set(crm_copies(sandbox))  # nor did the client sync
    reviewed = {row["subject"] for row in sqlite_store.open_client_review() if row["reason"] == "unmapped_department"}
    created_elsewhere = {link.fakturownia_client_id for link in sqlite_store.all_client_links()}
    assert {f"fakturownia:{f_id}" for f_id in unmapped - created_elsewhere} <= reviewed
