"""Sugester CRM API client (v1, `https://PREFIX.sugester.pl/app/...`).

Sugester does not document pagination. We send `page`/`per_page=100` like its sister product and stop at
an empty page or at a page that brings no new ids, so the scan ends correctly whether the server honours
`per_page`, caps it lower, or ignores `page` altogether (at the cost of one extra request per scan).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fakturownia_sync.accounts import ApiAccount
from fakturownia_sync.rate_budget import RateBudget
from fakturownia_sync.transport import LIST, RECORD, ApiTransport, RetryPolicy

PER_PAGE = 100


def external_ids_of(record: dict[str, Any]) -> dict[str, str]:
    """A record's `external_ids` as {app_code: value}, whatever shape the server returned it in."""
    raw = record.get("external_ids")
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items() if v not in (None, "")}
    if isinstance(raw, list):
        pairs = {}
        for item in raw:
            if isinstance(item, dict):
                key = item.get("app_code") or item.get("name") or item.get("key")
                value = item.get("external_id") or item.get("value")
                if key and value not in (None, ""):
                    pairs[str(key)] = str(value)
        return pairs
    return {}


class SugesterClient:
    def __init__(self, transport: ApiTransport) -> None:
        self.transport = transport

    @classmethod
    def connect(
        cls, account: ApiAccount, *, requests_per_minute: int = 0, policy: RetryPolicy | None = None
    ) -> SugesterClient:
        budget = RateBudget.shared(f"{account.api} {account.base_url}", requests_per_minute)
        return cls(ApiTransport(account, policy=policy, budget=budget))

    @property
    def account(self) -> ApiAccount:
        return self.transport.account

    def iter_all(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        seen: set[int] = set()
        page = 1
        while True:
            items = self.transport.request(
                "GET", path, params={**(params or {}), "page": page, "per_page": PER_PAGE}, expect=LIST
            )
            fresh = [item for item in items or [] if item.get("id") not in seen]
            if not fresh:
                return
            for item in fresh:
                seen.add(item.get("id"))
                yield item
            page += 1

    def iter_clients(self) -> Iterator[dict[str, Any]]:
        return self.iter_all("/app/clients.json")

    def get_client(self, client_id: int) -> dict[str, Any]:
        return self.transport.request("GET", f"/app/clients/{int(client_id)}.json", expect=RECORD)

    def create_client(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("POST", "/app/clients.json", body={"client": fields}, expect=RECORD)

    def update_client(self, client_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("PUT", f"/app/clients/{int(client_id)}.json", body={"client": fields})

    def iter_deals(self) -> Iterator[dict[str, Any]]:
        return self.iter_all("/app/deals.json")

    def get_deal(self, deal_id: int) -> dict[str, Any]:
        return self.transport.request("GET", f"/app/deals/{int(deal_id)}.json", expect=RECORD)

    def create_deal(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("POST", "/app/deals.json", body={"deal": fields}, expect=RECORD)

    def update_deal(self, deal_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("PUT", f"/app/deals/{int(deal_id)}.json", body={"deal": fields})

    def deal_statuses(self) -> list[dict[str, Any]]:
        """The CRM's deal statuses (pipeline stages), `[{id, name, code, kind}]`; names are unique per kind."""
        return self.transport.request("GET", "/app/statuses.json", params={"kind": "deal"}, expect=LIST)

    def team_users(self) -> list[dict[str, Any]]:
        """The account's users (`GET /app/users/team.json`): documented only as XML, so callers must be
        ready for a 404 or an answer that is not a list (see `users.crm_users`)."""
        return self.transport.request("GET", "/app/users/team.json")

    def departments(self) -> list[dict[str, Any]]:
        return self.transport.request("GET", "/app/departments.json", expect=LIST)

    def check_access(self) -> None:
        """One cheap authenticated read; raises `ApiAuthError`/`ApiUnavailable` when the account is unusable."""
        self.transport.request("GET", "/app/clients.json", params={"page": 1, "per_page": 1})
