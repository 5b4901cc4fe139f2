"""Fakturownia.pl API client (same engine as InvoiceOcean, VosFactures, Bitfactura).

Lists are bare JSON arrays with no total and no Link header: we ask for `per_page=100` (the documented
maximum) and stop at the first short page. Every list sends `period=all`, because the default period
silently hides documents older than twelve months.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fakturownia_sync.accounts import ApiAccount
from fakturownia_sync.rate_budget import RateBudget
from fakturownia_sync.sweep import Sweep
from fakturownia_sync.transport import LIST, RECORD, ApiTransport, RetryPolicy

PER_PAGE = 100


class FakturowniaClient:
    def __init__(self, transport: ApiTransport) -> None:
        self.transport = transport

    @classmethod
    def connect(
        cls, account: ApiAccount, *, requests_per_minute: int = 0, policy: RetryPolicy | None = None
    ) -> FakturowniaClient:
        budget = RateBudget.shared(f"{account.api} {account.base_url}", requests_per_minute)
        return cls(ApiTransport(account, policy=policy, budget=budget))

    @property
    def account(self) -> ApiAccount:
        return self.transport.account

    def invoice_url(self, invoice_id: int) -> str:
        """The invoice's page in the Fakturownia app (for a logged-in user; no token in it)."""
        return f"{self.account.base_url}/invoices/{invoice_id}"

    def fetch_page(self, path: str, params: dict[str, Any], page: int, per_page: int) -> list[dict[str, Any]]:
        """One page of a list at any `per_page` up to 100: what `sweep.Sweep` reads (overlapping pages)."""
        items = self.transport.request("GET", path, params={**params, "page": page, "per_page": per_page}, expect=LIST)
        return items or []

    def invoice_pages_by_update(self) -> Callable[[int, int], list[dict[str, Any]]]:
        """`fetch(page, per_page)` over sales invoices, most recently updated first (the incremental sweep)."""
        params = {"period": "all", "order": "updated_at.desc"}
        return lambda page, per_page: self.fetch_page("/invoices.json", params, page, per_page)

    def invoice_pages_issued_between(
        self, date_from: str, date_to: str, kinds: list[str] | None = None
    ) -> Callable[[int, int], list[dict[str, Any]]]:
        """`fetch(page, per_page)` over sales invoices issued in [date_from, date_to], by id (a backfill window)."""
        params: dict[str, Any] = {
            "period": "more",
            "date_from": date_from,
            "date_to": date_to,
            "search_date_type": "issue_date",
            "order": "id",
        }
        if kinds:
            params["kinds[]"] = list(kinds)
        return lambda page, per_page: self.fetch_page("/invoices.json", params, page, per_page)

    def client_pages_by_update(self) -> Callable[[int, int], list[dict[str, Any]]]:
        """`fetch(page, per_page)` over clients, most recently updated first (the client sync's sweep)."""
        return lambda page, per_page: self.fetch_page("/clients.json", {"order": "updated_at.desc"}, page, per_page)

    def first_invoice_page_by_issue_date(
        self, date_from: str, date_to: str, kinds: list[str] | None, *, newest: bool
    ) -> list[dict[str, Any]]:
        """One page of the sales invoices issued in [date_from, date_to], oldest (or newest) issue date first.

        The docs list `order=issue_date`; whether the `.desc` suffix is honoured is not documented, so the
        caller must not trust the order (see `backfill.issue_date_bounds`, which checks the dates it gets)."""
        params: dict[str, Any] = {
            "period": "more",
            "date_from": date_from,
            "date_to": date_to,
            "search_date_type": "issue_date",
            "order": "issue_date.desc" if newest else "issue_date",
            "page": 1,
            "per_page": PER_PAGE,
        }
        if kinds:
            params["kinds[]"] = list(kinds)
        return self.transport.request("GET", "/invoices.json", params=params, expect=LIST) or []

    def get_invoice(self, invoice_id: int) -> dict[str, Any]:
        return self.transport.request("GET", f"/invoices/{int(invoice_id)}.json", expect=RECORD)

    def get_client(self, client_id: int) -> dict[str, Any]:
        return self.transport.request("GET", f"/clients/{int(client_id)}.json", expect=RECORD)

    def iter_client_cards(self) -> Iterator[dict[str, Any]]:
        """Every client card once, through the one sweep (`sweep.Sweep`): a card list that changes while it is
        read (a card added or deleted meanwhile) neither skips nor repeats a card, or the read fails."""
        return Sweep(self.client_pages_by_update(), what="Fakturownia clients").records()

    def create_client(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("POST", "/clients.json", body={"client": fields}, expect=RECORD)

    def update_client(self, client_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("PUT", f"/clients/{int(client_id)}.json", body={"client": fields})

    def create_invoice(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self.transport.request("POST", "/invoices.json", body={"invoice": fields}, expect=RECORD)

    def invoices_by_oid(self, oid: str) -> list[dict[str, Any]]:
        """Sales invoices whose `oid` (external order number) is `oid`, of any date (`period=all`)."""
        found = self.transport.request(
            "GET", "/invoices.json", params={"oid": oid, "period": "all", "page": 1, "per_page": PER_PAGE}, expect=LIST
        )
        return [invoice for invoice in found or [] if str(invoice.get("oid") or "") == str(oid)]

    def departments(self) -> list[dict[str, Any]]:
        return self.transport.request("GET", "/departments.json", expect=LIST)

    def list_webhooks(self) -> list[dict[str, Any]]:
        """The account's webhooks (`GET /webhooks.json`): `[{id, kind, url, api_token, active}]`. Each carries
        its own token (not the API token): callers never show it. A 404 or 403 (`ApiNotFound`, `ApiAuthError`)
        means the account or token has no webhook API."""
        return self.transport.request("GET", "/webhooks.json", expect=LIST) or []

    def create_webhook(self, kind: str, url: str, token: str) -> dict[str, Any]:
        """Register an active webhook: events of `kind` (e.g. `invoice:create`) are POSTed to `url` carrying
        `token` (the receiver's own token, `api_token` in the event) so the receiver can authenticate them."""
        body = {"webhook": {"kind": kind, "url": url, "api_token": token, "active": True}}
        return self.transport.request("POST", "/webhooks.json", body=body, expect=RECORD)

    def check_access(self) -> None:
        """One cheap authenticated read; raises `ApiAuthError`/`ApiUnavailable` when the account is unusable."""
        self.transport.request("GET", "/invoices.json", params={"period": "all", "per_page": 1, "page": 1})
