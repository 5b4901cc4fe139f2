"""The review CSV is safe to open in a spreadsheet and is written only under the export folder."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from fakturownia_sync.review import (
    REVIEW_DIRECTORY,
    REVIEW_FILE,
    ReviewEntry,
    UnsafeExportPath,
    neutralise,
    review_export_path,
    write_review_csv,
)
from fakturownia_sync.state import StateStore
from fakturownia_sync_airflow import tasks

FORMULA = '=HYPERLINK("http://x","y")'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_review_csv_neutralises_a_crm_client_named_like_a_formula(store: StateStore, tmp_path: Path) -> None:
    entry = ReviewEntry(
        subject="crm:7",
        reason="possible_duplicate",
        message="-1 is not a client",
        crm_client_id=7,
        crm_record={"id": 7, "name": FORMULA, "tax_no": "+48 22 111", "email": "@admin"},
    )
    store.sync_client_review([entry.as_row()])
    path = tmp_path / "home" / "review.csv"
    assert write_review_csv(store.open_client_review(), path, root=tmp_path / "home") == 1
    [row] = read(path)
    assert row["crm_name"] == "'" + FORMULA
    assert (row["crm_tax_no"], row["crm_email"], row["message"]) == ("'+48 22 111", "'@admin", "'-1 is not a client")
    assert row["crm_client_id"] == "7"  # a number the export writes itself stays a number
    assert row["crm_record"].startswith("{")  # JSON text: shown as text by spreadsheets, not run
    assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values())


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", " =1+1", "   @SUM(A1)"])
def test_every_formula_trigger_gets_a_leading_quote(text: str) -> None:
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("value", ["Nowak Sp. z o.o.", "", "1=1", 7, -3, 1.5])
def test_plain_text_and_numbers_are_left_alone(value: object) -> None:
    assert neutralise(value) == value


@pytest.mark.parametrize("requested", ["../../etc/x.csv", "/etc/x.csv", "sub/../../x.csv", "~/../x.csv"])
def test_review_path_outside_the_export_folder_is_refused(tmp_path: Path, requested: str) -> None:
    root = tmp_path / "home"
    root.mkdir()
    with pytest.raises(UnsafeExportPath) as info:
        review_export_path(requested, root)
    assert str(info.value).startswith("Param 'review_csv_path'") and "outside the export folder" in str(info.value)


def test_review_path_through_a_link_out_of_the_export_folder_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "home", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "exports").symlink_to(outside)
    with pytest.raises(UnsafeExportPath):
        review_export_path("exports/review.csv", root)
    with pytest.raises(UnsafeExportPath):
        write_review_csv([], root / "exports" / "review.csv", root=root)
    assert list(outside.iterdir()) == []


def test_review_path_inside_the_export_folder_is_accepted(tmp_path: Path) -> None:
    root = tmp_path / "home"
    (root / "reports").mkdir(parents=True)
    resolved = root.resolve()
    assert review_export_path(None, root) == resolved / REVIEW_DIRECTORY / REVIEW_FILE
    assert review_export_path("reports", root) == resolved / "reports" / REVIEW_FILE
    assert review_export_path("new/", root) == resolved / "new" / REVIEW_FILE
    assert review_export_path(str(root / "a" / ".." / "b.csv"), root) == resolved / "b.csv"
    assert write_review_csv([], root / "deep" / "er" / "r.csv", root=root) == 0
    assert read(root / "deep" / "er" / "r.csv") == []


def test_review_export_task_fails_outside_airflow_home_and_creates_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.delenv("AIRFLOW__FAKTUROWNIA_SYNC__REVIEW_EXPORT_FOLDER", raising=False)
    for requested in ("../../etc/x.csv", str(tmp_path / "elsewhere" / "x.csv")):
        with pytest.raises(AirflowFailException, match="outside the export folder"):
            tasks.review_csv_path(requested)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["airflow"]
    assert tasks.review_csv_path(None) == home.resolve() / REVIEW_DIRECTORY / REVIEW_FILE


def test_review_export_folder_can_be_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW__FAKTUROWNIA_SYNC__REVIEW_EXPORT_FOLDER", str(tmp_path / "exports"))
    assert tasks.review_csv_path("x.csv") == (tmp_path / "exports").resolve() / "x.csv"
    with pytest.raises(AirflowFailException, match="outside the export folder"):
        tasks.review_csv_path(str(tmp_path / "airflow" / "x.csv"))
