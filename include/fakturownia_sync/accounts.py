"""Where an API account lives: turning connection fields (host, token) into a base URL and an account name.

Both vendors hand out tokens written `TOKEN/prefix`, and address an account by its prefix
(`acme` → `https://acme.fakturownia.pl`). Tests and the sandbox use a full base URL instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fakturownia_sync.errors import ConfigError

FAKTUROWNIA = "Fakturownia"
SUGESTER = "Sugester"
DOMAINS = {FAKTUROWNIA: "fakturownia.pl", SUGESTER: "sugester.pl"}


@dataclass(frozen=True)
class ApiAccount:
    """One vendor account: where to send requests and the token to send. The token never shows in repr."""

    api: str
    base_url: str
    name: str
    token: str = field(repr=False)

    def __str__(self) -> str:
        return f"{self.api} account '{self.name}' ({self.base_url})"


def resolve_account(
    api: str,
    *,
    token: str | None,
    host: str | None = None,
    port: int | None = None,
    schema: str | None = None,
    conn_id: str = "",
) -> ApiAccount:
    """Build an `ApiAccount` from connection fields.

    `host` may be an account prefix (`acme`), a host name (`acme.fakturownia.pl`) or a full base URL
    (`http://127.0.0.1:18081`). With no host, the prefix after the slash of a `TOKEN/prefix` token names
    the account. The whole token string is sent as `api_token`, as both vendors' own examples do.
    """
    where = f"connection '{conn_id}'" if conn_id else f"the {api} connection"
    token = (token or "").strip()
    if not token:
        raise ConfigError(f"{where} has no API token: put the {api} API token in its password field.")
    host = (host or "").strip().rstrip("/")
    token_prefix = token.rsplit("/", 1)[1].strip() if "/" in token else ""
    if not host:
        if not token_prefix:
            raise ConfigError(
                f"{where} names no {api} account: set its host to the account prefix "
                "(e.g. 'acme') or a base URL, or use a token written TOKEN/prefix."
            )
        host = token_prefix
    if "://" in host:
        parts = urlsplit(host)
        base_url = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        # host:port, not the bare host: two sandboxes on one machine differ only by port
        name = parts.netloc.rsplit("@", 1)[-1] or host
        if parts.hostname and parts.hostname.endswith("." + DOMAINS.get(api, "")):
            name = parts.hostname.split(".", 1)[0]
    elif "." in host or ":" in host:
        scheme = schema if schema in ("http", "https") else "https"
        netloc = f"{host}:{port}" if port and ":" not in host else host
        base_url = f"{scheme}://{netloc}"
        name = host.split(".", 1)[0] if host.endswith("." + DOMAINS.get(api, "")) else netloc
    else:
        base_url = f"https://{host}.{DOMAINS[api]}"
        name = host
    return ApiAccount(api=api, base_url=base_url, name=name, token=token)
