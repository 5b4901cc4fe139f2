"""How a client's fields map between Fakturownia and the CRM, in one table.

| Fakturownia        | CRM (Sugester)                          | note                                        |
|--------------------|-----------------------------------------|---------------------------------------------|
| name               | name                                    | for a private person: first + last name     |
| shortcut           | shortcut                                |                                             |
| tax_no             | tax_no                                  | NIP; matched after normalisation            |
| email              | email                                   | matched case- and whitespace-insensitively  |
| phone              | phone                                   |                                             |
| mobile_phone       | mobile_phone                            |                                             |
| street             | street                                  |                                             |
| post_code          | post_code                               |                                             |
| city               | city                                    |                                             |
| country            | country                                 | ISO 3166 code                               |
| first_name         | first_name                              | private persons                             |
| last_name          | last_name                               | private persons                             |
| note               | note                                    |                                             |
| company            | company                                 | false for a private person                  |
| department_id      | department_id                           | through `department_map`                    |
| id                 | external_ids.fakturownia_client_id      | set on clients we create in the CRM         |
| external_id        | id                                      | set on clients we create in Fakturownia     |
"""

from __future__ import annotations

from typing import Any

from include.records import Party

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
