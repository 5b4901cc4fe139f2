"""Addresses of records in the two vendors' web apps, for a person who is logged in there (no token in them).

Built from the account's base URL (`ApiAccount.base_url`), the one place that knows where an account lives.
"""

from __future__ import annotations

from fakturownia_sync.accounts import ApiAccount

FAKTUROWNIA_KINDS = {"invoice": "invoices", "client": "clients"}
CRM_KINDS = {"deal": "deals", "client": "clients"}


def fakturownia_url(account: ApiAccount | None, kind: str, record_id: int | str | None) -> str | None:
    """`https://acme.fakturownia.pl/invoices/12` and the like; None when the account or the id is unknown."""
    if account is None or record_id in (None, ""):
        return None
    return f"{account.base_url}/{FAKTUROWNIA_KINDS[kind]}/{record_id}"


def crm_url(account: ApiAccount | None, kind: str, record_id: int | str | None) -> str | None:
    """`https://acme.sugester.pl/app/deals/7` and the like; None when the account or the id is unknown."""
    if account is None or record_id in (None, ""):
        return None
    return f"{account.base_url}/app/{CRM_KINDS[kind]}/{record_id}"
