"""Looking at what a sync left in the sandbox's CRM: deals per invoice, duplicates, and a picture to compare.

Used by the tests and by `make soak` to judge a run from the outside, through the sandbox's dump (its
whole store, read over its control API), never through the state DB of the run being judged. Deals are
tied to invoices by the external id the sync writes (`external_ids.fakturownia_invoice_id`), read with the
engine's own helpers so that the judge and the sync agree on the contract.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
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


def invoices_owed_a_deal(fakturownia_dump: dict[str, Any], kinds: Iterable[str]) -> set[int]:
    """Ids of the invoices the sync owes one deal each: sales invoices of the chosen kinds, not cancelled, not
    corrections (a correction rewrites the deal of the invoice it corrects). Read with the engine's own parser,
    so the judge and the sync agree on what an invoice is; an invoice it cannot parse is owed a quarantine
    entry instead, and is left to the caller's quarantine count."""
    from fakturownia_sync.deal_mapping import corrected_invoice_id
    from fakturownia_sync.errors import RecordError
    from fakturownia_sync.records import parse_invoice

    chosen = set(kinds)
    owed: set[int] = set()
    for raw in fakturownia_dump["invoices"]:
        try:
            invoice = parse_invoice(raw)
        except RecordError:
            continue
        corrected = corrected_invoice_id(invoice)
        if invoice.income and not invoice.cancelled and invoice.kind in chosen and corrected in (None, invoice.id):
            owed.add(invoice.id)
    return owed


def client_copies(fakturownia_dump: dict[str, Any], crm_dump: dict[str, Any]) -> dict[str, Counter]:
    """How many clients on one side name the same client of the other side through the external ids the sync
    writes (CRM `external_ids.fakturownia_client_id`, Fakturownia `external_id`), and how many CRM clients
    carry the same anonymous-buyer marker: any count above one is a client the sync made twice."""
    from fakturownia_sync.client_decisions import ANONYMOUS_MARK

    crm: Counter = Counter()
    anonymous: Counter = Counter()
    for client in crm_dump["clients"]:
        source = external_ids_of(client).get("fakturownia_client_id")
        if source:
            crm[str(source)] += 1
        note = client.get("note")
        if isinstance(note, str):
            anonymous.update(re.findall(rf"\[{re.escape(ANONYMOUS_MARK)} (anonymous:[^\]]*)\]", note))
    fakturownia: Counter = Counter(
        str(client["external_id"]) for client in fakturownia_dump["clients"] if client.get("external_id")
    )
    return {"crm_per_fakturownia_client": crm, "fakturownia_per_crm_client": fakturownia, "anonymous": anonymous}
