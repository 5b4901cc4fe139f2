"""Does an API account answer to its token, and is it the account this deployment means to use?

One wording for both callers: every sync DAG's `check_setup` fails with these sentences, and
`fakturownia_integration_check` lists them in its report. Each names the account and the connection to fix,
never the token.
"""

from __future__ import annotations

from typing import Protocol

from fakturownia_sync.accounts import ApiAccount
from fakturownia_sync.errors import ApiAuthError, ApiError


class _CheckableClient(Protocol):
    @property
    def account(self) -> ApiAccount: ...

    def check_access(self) -> None: ...


def describe_access_error(account: ApiAccount, exc: ApiError) -> str:
    """Why `account` cannot be used, in one clause naming the account (`exc.message` is the API's own
    message, already free of secrets); callers add what to fix where they know it."""
    if isinstance(exc, ApiAuthError):
        return (
            f"{account.api} rejected the API token for account '{account.name}' ({account.base_url}) with "
            f"HTTP {exc.status} ({exc.message})"
        )
    return f"Could not use {account.api} account '{account.name}' at {account.base_url} ({exc.message})"


def access_problem(client: _CheckableClient, conn_id: str) -> str | None:
    """None when the account answers one cheap authenticated read; else the sentence that says why not and
    which field of connection `conn_id` to check."""
    try:
        client.check_access()
    except ApiError as exc:
        field = "password" if isinstance(exc, ApiAuthError) else "host"
        return f"{describe_access_error(client.account, exc)}; check the {field} of connection '{conn_id}'."
    return None


def expected_account_problem(account: ApiAccount, expected: str | None, conn_id: str, key: str) -> str | None:
    """None when `expected` (config key `key`) is unset or names this account; else the sentence saying which
    account the connection reaches instead. A wrong account answers to its own token, so only this catches it."""
    if expected is None or expected == account.name:
        return None
    return (
        f"Connection '{conn_id}' reaches {account.api} account '{account.name}' ({account.base_url}), but "
        f"config key '{key}' expects account '{expected}'; fix the connection's host (or the key)."
    )
