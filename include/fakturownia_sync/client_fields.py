"""How a client's fields map between Fakturownia and the CRM, both ways, in one table.

| Fakturownia    | CRM (Sugester)                      | synced | note                                          |
|----------------|-------------------------------------|--------|-----------------------------------------------|
| name           | name                                | both   | for a private person: first + last name       |
| shortcut       | shortcut                            | both   |                                               |
| tax_no         | tax_no                              | both   | NIP; compared normalised (any spelling)       |
| email          | email                               | both   | compared case- and whitespace-insensitively   |
| phone          | phone                               | both   |                                               |
| mobile_phone   | mobile_phone                        | both   |                                               |
| street         | street                              | both   |                                               |
| post_code      | post_code                           | both   |                                               |
| city           | city                                | both   |                                               |
| country        | country                             | both   | ISO 3166 code, compared upper-case            |
| first_name     | first_name                          | both   | private persons                               |
| last_name      | last_name                           | both   | private persons (Fakturownia requires it)     |
| note           | note                                | both   |                                               |
| company        | company                             | both   | false for a private person                    |
| department_id  | department_id                       | both   | through `department_map` / `no_department`    |
| id             | external_ids.fakturownia_client_id  | → CRM  | set on CRM clients we create or link          |
| external_id    | id                                  | → F    | set on Fakturownia clients we create (only)   |

Text fields compare with surrounding and repeated whitespace ignored and empty equal to missing, so a
value that only differs in spelling of "nothing" is never written back and forth. Fakturownia's
`external_id` is written only on clients we create: on an existing client it may belong to another
integration (a shop), so it is never overwritten.
"""

from __future__ import annotations

from typing import Any

from fakturownia_sync.client_keys import email_key, tax_key
from fakturownia_sync.records import Party

FAKTUROWNIA_CLIENT_KEY = "fakturownia_client_id"

SHARED_FIELDS = (
    "name", "shortcut", "tax_no", "email", "phone", "mobile_phone", "street", "post_code", "city",
    "country", "first_name", "last_name", "note",
)  # fmt: skip


def crm_client_fields(
    party: Party, *, fakturownia_client_id: int | None, crm_department_id: int | None
) -> dict[str, Any]:
    """The CRM client to create for a Fakturownia client (or an invoice's buyer when there is no client)."""
    fields: dict[str, Any] = {name: getattr(party, name) for name in SHARED_FIELDS if getattr(party, name)}
    if not fields.get("name"):
        fields["name"] = " ".join(part for part in (party.first_name, party.last_name) if part)
    fields["company"] = party.company
    if crm_department_id is not None:
        fields["department_id"] = crm_department_id
    if fakturownia_client_id is not None:
        fields["external_ids"] = {FAKTUROWNIA_CLIENT_KEY: str(fakturownia_client_id)}
    return fields


# Two-way sync ------------------------------------------------------------------------------------------

SYNCED_FIELDS = (*SHARED_FIELDS, "company", "department_id")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _optional_id(value: Any) -> int | None:
    if _blank(value) or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _flag(value: Any) -> bool:
    return value not in (False, "0", 0, "false", "no")


def comparable(field: str, value: Any) -> Any:
    """A field's value as compared between runs and sides: JSON-ready, None for "nothing"."""
    if field == "company":
        return _flag(value)
    if field == "department_id":
        return _optional_id(value)
    if _blank(value):
        return None
    text = " ".join(str(value).split())
    if field == "tax_no":
        return tax_key(text) or text.upper()
    if field == "email":
        return email_key(text) or text.casefold()
    if field == "country":
        return text.upper()
    return text


def client_view(raw: dict[str, Any]) -> dict[str, Any]:
    """The synced fields of a client record (either side; the field names are the same), comparable."""
    return {field: comparable(field, raw.get(field)) for field in SYNCED_FIELDS}


def writable_value(field: str, value: Any) -> Any:
    """A raw value as it is sent to the other side (department ids are translated by the caller)."""
    if field == "company":
        return _flag(value)
    if field == "department_id":
        return _optional_id(value)
    return None if _blank(value) else str(value).strip()


def fakturownia_client_fields(
    crm_client: dict[str, Any], *, crm_client_id: int, fakturownia_department_id: int | None, departments: bool
) -> dict[str, Any]:
    """The Fakturownia client to create for a CRM client; `external_id` names the CRM client."""
    party = Party.from_client(crm_client)
    fields: dict[str, Any] = {name: getattr(party, name) for name in SHARED_FIELDS if getattr(party, name)}
    if not fields.get("name"):
        fields["name"] = " ".join(part for part in (party.first_name, party.last_name) if part)
    fields["company"] = party.company
    if not party.company and not fields.get("last_name"):
        # Fakturownia wants a last name for a private person; the CRM may only have the full name.
        first, _, last = fields.get("name", "").rpartition(" ")
        fields["last_name"] = last or first
        if first and last:
            fields.setdefault("first_name", first)
    if departments:
        fields["department_id"] = fakturownia_department_id
    fields["external_id"] = str(crm_client_id)
    return fields
