"""The client review list: records the sync will not decide alone, with the reason and what might fix it.

Each entry concerns one record (`subject` = `fakturownia:<id>` or `crm:<id>`) and carries both records
involved and look-alike suggestions. Nothing is written for a record while it is under review. The list
is recomputed by every run over both whole client bases, so an entry resolves itself as soon as a run
finds the data fixed (a NIP corrected, a duplicate removed, a department mapped).

Reasons:

| reason                     | meaning                                                                   |
|----------------------------|---------------------------------------------------------------------------|
| ambiguous_external_id      | external ids name several records                                         |
| ambiguous_nip              | the NIP is on several clients of the other system (or of both)            |
| ambiguous_email            | the e-mail is on several clients of the other system (or of both)         |
| duplicate_of_linked        | the evidence points only at a client already linked to another one        |
| duplicate_in_fakturownia   | the same NIP/e-mail twice in Fakturownia, not at all in the CRM           |
| duplicate_in_crm           | the same NIP/e-mail twice in the CRM, not at all in Fakturownia           |
| possible_duplicate         | held: a very similar name at the same place, no NIP/e-mail tells apart    |
| invalid_nip                | unmatched, and its NIP fails the checksum: not copied until fixed         |
| no_name                    | neither a name nor a first/last name: the other system would refuse it    |
| unmapped_department        | its department has no partner in `department_map`                         |
| linked_record_missing      | its linked partner no longer exists (deletions are never propagated)      |
| fakturownia_rejected / crm_rejected | the API refused the write (422); the API's message is kept       |

Notes: entries that hold nothing (the record is created or linked as usual); they stay on the list until a
person acts on them.

| reason                     | meaning                                                                   |
|----------------------------|---------------------------------------------------------------------------|
| possible_duplicate (note)  | created, though it resembles a client (name and post code, shared e-mail) |
|                            | that a different valid NIP tells apart: merge by hand if they are one     |
| invalid_tax_id             | its tax id is junk or fails its check, so it is used as none; fix it      |

The CSV export is read by people in spreadsheets, and its cells hold text that anyone with a client card can
type: every text cell that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
carriage return) gets a leading `'` (OWASP "CSV injection"); the ids this module writes stay numbers. The file
goes only under an export root (the adapter passes `$AIRFLOW_HOME` or a configured folder), checked after `..`
and symbolic links are resolved, so a Param cannot write, or create folders, anywhere else.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fakturownia_sync.errors import ConfigError

REVIEW_DIRECTORY = "fakturownia_sync_review"
REVIEW_FILE = "client_review.csv"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

CSV_COLUMNS = (
    "reason",
    "subject",
    "message",
    "fakturownia_client_id",
    "crm_client_id",
    "fakturownia_name",
    "fakturownia_tax_no",
    "fakturownia_email",
    "crm_name",
    "crm_tax_no",
    "crm_email",
    "suggestions",
    "fakturownia_record",
    "crm_record",
    "first_seen_at",
    "last_seen_at",
)


@dataclass(frozen=True)
class ReviewEntry:
    subject: str
    reason: str
    message: str
    fakturownia_client_id: int | None = None
    crm_client_id: int | None = None
    fakturownia_record: dict[str, Any] | None = None
    crm_record: dict[str, Any] | None = None
    suggestions: list[dict[str, Any]] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def subject(side: str, record_id: int) -> str:
    return f"{side}:{int(record_id)}"


class UnsafeExportPath(ConfigError):
    """The requested export path resolves outside the export root; nothing is written or created."""


def neutralise(value: Any) -> Any:
    """A cell a spreadsheet shows as text: formula-like text gets a leading `'`; numbers stay numbers.

    Leading spaces count as nothing: some spreadsheets trim them and then read `" =1+1"` as a formula."""
    if isinstance(value, str) and value.lstrip(" ").startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def review_export_path(requested: str | None, root: Path, param: str = "review_csv_path") -> Path:
    """The CSV file to write for `requested` (a file, or a folder: an existing one or one ending in `/`),
    relative paths taken from `root`; `UnsafeExportPath` unless it lies inside `root` once `..` and links
    are resolved. No `requested`: `<root>/fakturownia_sync_review/client_review.csv`."""
    base = root.expanduser().resolve()
    if not requested:
        return base / REVIEW_DIRECTORY / REVIEW_FILE
    candidate = Path(requested).expanduser()
    candidate = candidate if candidate.is_absolute() else base / candidate
    folder = requested.endswith(("/", os.sep)) or candidate.is_dir()
    resolved = candidate.resolve()
    target = resolved / REVIEW_FILE if folder else resolved
    if target == base or not target.is_relative_to(base):
        raise UnsafeExportPath(
            f"Param '{param}' {requested!r} resolves to {target}, outside the export folder {base}; "
            f"give a path under {base}"
        )
    return target


def _cell(record: dict[str, Any] | None, name: str) -> str:
    value = (record or {}).get(name)
    return "" if value is None else str(value)


def write_review_csv(rows: Iterable[dict[str, Any]], path: Path, root: Path | None = None) -> int:
    """Write open review entries (rows of `client_review`) as CSV for people with a spreadsheet; returns
    the number of entries. Written to a temporary name first, so a reader never sees half a file.

    With `root`, the file and any folder created for it must lie inside `root` (checked again after the
    folders are made, so a link swapped in meanwhile is caught) and the temporary file is never a link."""
    if root is not None:
        path = review_export_path(str(path), root)
    path.parent.mkdir(parents=True, exist_ok=True)
    if root is not None:
        path = review_export_path(str(path), root)
    temporary = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    if temporary.is_symlink():
        temporary.unlink()
    count = 0
    with os.fdopen(os.open(temporary, flags, 0o640), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            f_record, c_record = row.get("fakturownia_record"), row.get("crm_record")
            cells = {
                "reason": row["reason"],
                "subject": row["subject"],
                "message": row["message"],
                "fakturownia_client_id": row.get("fakturownia_client_id") or "",
                "crm_client_id": row.get("crm_client_id") or "",
                "fakturownia_name": _cell(f_record, "name"),
                "fakturownia_tax_no": _cell(f_record, "tax_no"),
                "fakturownia_email": _cell(f_record, "email"),
                "crm_name": _cell(c_record, "name"),
                "crm_tax_no": _cell(c_record, "tax_no"),
                "crm_email": _cell(c_record, "email"),
                "suggestions": json.dumps(row.get("suggestions") or [], ensure_ascii=False),
                "fakturownia_record": json.dumps(f_record, ensure_ascii=False) if f_record else "",
                "crm_record": json.dumps(c_record, ensure_ascii=False) if c_record else "",
                "first_seen_at": row.get("first_seen_at") or "",
                "last_seen_at": row.get("last_seen_at") or "",
            }
            writer.writerow({name: neutralise(value) for name, value in cells.items()})
            count += 1
    temporary.replace(path)
    return count
