"""Looking at what a sync left in the sandbox's CRM: deals per invoice, duplicates, and a picture to compare.

Used by the tests and by `make soak` to judge a run from the outside, through the sandbox's dump (its
whole store, read over its control API), never through the state DB of the run being judged. Deals are
tied to invoices by the external id the sync writes (`external_ids.fakturownia_invoice_id`), read with the
engine's own helpers so that the judge and the sync agree on the contract.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Protocol

from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY
from fakturownia_sync.sugester_client import external_ids_of


class Dumpable(Protocol):
    """A running sandbox (`sandbox.process.SandboxProcess`) or anything else that dumps an API's store."""

    def dump(self, api: str) -> dict[str, Any]: ...


def deals_by_invoice(sandbox: Dumpable) -> dict[int, list[dict[str, Any]]]:
    """Every CRM deal grouped by the Fakturownia invoice id it carries (a list, to expose duplicates);
    deals that carry none are under -1."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for deal in sandbox.dump("sugester")["deals"]:
        invoice_id = external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)
        grouped.setdefault(int(invoice_id) if invoice_id else -1, []).append(deal)
    return grouped


def duplicates(grouped: dict[int, list[dict[str, Any]]]) -> dict[int, int]:
    """Invoice id → number of deals, for the invoices with more than one deal."""
    return {invoice_id: len(deals) for invoice_id, deals in grouped.items() if len(deals) > 1}


def crm_picture(sandbox: Dumpable) -> dict[str, Any]:
    """The CRM's content without its own ids, to compare runs that created records in another order:
    each deal by its invoice id (name, price, currency, department, invoice link, client), and how many
    clients there are of each (name, NIP, e-mail)."""
    dump = sandbox.dump("sugester")
    clients = {client["id"]: client for client in dump["clients"]}

    def client_key(client_id: Any) -> str:
        client = clients.get(client_id, {})
        return json.dumps([client.get("name"), client.get("tax_no"), client.get("email")], ensure_ascii=False)

    deals = {}
    for deal in dump["deals"]:
        invoice_id = external_ids_of(deal).get(FAKTUROWNIA_INVOICE_KEY)
        deals[invoice_id] = (
            deal.get("name"),
            str(deal.get("price")),
            deal.get("currency"),
            deal.get("department_id"),
            deal.get("url", "").rsplit("/", 1)[-1],
            client_key(deal.get("client_id")),
        )
    client_counts = Counter(client_key(client_id) for client_id in clients)
    return {"deals": deals, "clients": client_counts}
