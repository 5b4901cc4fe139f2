"""What each section of the page shows, gathered into plain dicts for the template.

Each section is built on its own and fails on its own: an API that does not answer, a config Variable that
does not validate or a connection that is missing becomes a sentence in that section (`Section.problem`),
never an error page, so a person can still see and act on everything else. Nothing here writes. These are the
sections read from the state DB; departments and users, which the APIs give, are in `api_sections`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fakturownia_sync.accounts import ApiAccount
from fakturownia_sync.clients_sync import STREAM as CLIENTS_STREAM
from fakturownia_sync.deals_to_invoices import STREAM as DEALS_TO_INVOICES_STREAM
from fakturownia_sync.errors import SyncError
from fakturownia_sync.ids import as_id
from fakturownia_sync.invoices_to_deals import STREAM as INVOICES_TO_DEALS_STREAM
from fakturownia_sync.state import StateStore
from fakturownia_sync.state.client_links import review_evidence
from fakturownia_sync.sugester_client import external_ids_of
from fakturownia_sync_airflow.ui.links import crm_url, fakturownia_url

log = logging.getLogger(__name__)

# The DAG whose next run acts on a stream's records (a quarantine retry, a review decision).
STREAM_DAGS = {
    INVOICES_TO_DEALS_STREAM: "fakturownia_invoices_to_deals",
    CLIENTS_STREAM: "fakturownia_clients_sync",
    DEALS_TO_INVOICES_STREAM: "crm_deals_to_invoices",
}
CLIENTS_DAG = STREAM_DAGS[CLIENTS_STREAM]

RUNS_PER_STREAM = 5
QUARANTINE_SHOWN = 300
REVIEW_SHOWN = 200

# Payload fields a person recognises a record by (an invoice, a deal or a client), in this order.
KEY_FIELDS = (
    "number", "kind", "issue_date", "name", "title", "buyer_name", "buyer_tax_no", "buyer_email", "tax_no",
    "email", "price_gross", "value", "currency", "client_id", "status",
)  # fmt: skip
MAX_KEY_FIELDS = 8

# Client fields shown side by side in the review list; those that mean the same on both sides are marked
# where the two records differ (department ids are each system's own numbers, not comparable).
CLIENT_FIELDS = (
    "name", "tax_no", "email", "phone", "street", "post_code", "city", "country", "department_id", "note",
)  # fmt: skip
COMPARABLE_FIELDS = frozenset(CLIENT_FIELDS) - {"department_id"}


@dataclass
class Section:
    """One section's data, or why it could not be shown."""

    data: Any = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def failure(what: str, exc: Exception) -> Section:
    """A section that could not be built, saying why: the engine's own errors by their message (which never
    holds a token or a password), anything else by its type only, the traceback going to the log."""
    if isinstance(exc, SyncError):
        return Section(problem=f"{what}: {exc}")
    log.error("The integration page could not show %s", what, exc_info=exc)
    return Section(problem=f"{what}: unexpected {type(exc).__name__} (see the api-server log)")


def guarded(what: str, build: Callable[[], Any]) -> Section:
    """Run a section's builder; an error becomes a sentence in that section instead of an error page."""
    try:
        result = build()
    except Exception as exc:  # a section must never take the page down
        return failure(what, exc)
    return result if isinstance(result, Section) else Section(data=result)


def human_lag(lag: timedelta) -> str:
    seconds = int(lag.total_seconds())
    if seconds < 0:
        return "ahead of the clock"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


# Runs and cursors ------------------------------------------------------------------------------------------


def runs_section(store: StateStore) -> dict[str, Any]:
    runs = {stream: store.runs_of(stream, RUNS_PER_STREAM) for stream in store.run_streams()}
    cursors = [{**cursor, "lag_text": human_lag(cursor["lag"])} for cursor in store.cursor_lags()]
    return {
        "streams": [
            {"stream": stream, "dag_id": STREAM_DAGS.get(stream), "runs": rows} for stream, rows in runs.items()
        ],
        "cursors": cursors,
    }


# Quarantine ------------------------------------------------------------------------------------------------


def key_fields(payload: Any) -> list[tuple[str, str]]:
    if not isinstance(payload, dict):
        return []
    shown = [(name, str(payload[name])) for name in KEY_FIELDS if payload.get(name) not in (None, "", [], {})]
    return shown[:MAX_KEY_FIELDS]


@dataclass
class RecordLinks:
    """What the state DB knows about the quarantined records of one page: their deals, invoices and clients on
    the other side, read in bulk so a page of entries costs a handful of queries."""

    fakturownia: ApiAccount | None
    crm: ApiAccount | None
    deal_of_invoice: dict[int, int]
    invoice_of_deal: dict[int, int]
    crm_of_client: dict[int, int]
    fakturownia_of_client: dict[int, int]

    @classmethod
    def read(
        cls, store: StateStore, entries: list[dict[str, Any]], fakturownia: ApiAccount | None, crm: ApiAccount | None
    ) -> RecordLinks:
        def ids(stream: str, of: Callable[[dict[str, Any]], Any]) -> list[int]:
            found = (as_id(of(e)) for e in entries if e["stream"] == stream)
            return [i for i in found if i is not None]

        invoices = ids(INVOICES_TO_DEALS_STREAM, lambda e: e["record_id"])
        links = store.deal_links(invoices)
        return cls(
            fakturownia,
            crm,
            {invoice: link.deal_id for invoice, link in links.items() if link.deal_id},
            store.invoices_of_deals(ids(DEALS_TO_INVOICES_STREAM, lambda e: e["record_id"])),
            store.crm_clients_linked_to(ids(INVOICES_TO_DEALS_STREAM, lambda e: _payload(e).get("client_id"))),
            store.fakturownia_clients_linked_to(ids(DEALS_TO_INVOICES_STREAM, lambda e: _payload(e).get("client_id"))),
        )

    def of(self, entry: dict[str, Any]) -> list[tuple[str, str]]:
        """(label, URL) of the record in its own system and of its counterpart in the other, where known."""
        record_id, client = as_id(entry["record_id"]), as_id(_payload(entry).get("client_id"))
        links: list[tuple[str, str | None]] = []
        if entry["stream"] == INVOICES_TO_DEALS_STREAM:
            links.append(("invoice in Fakturownia", fakturownia_url(self.fakturownia, "invoice", record_id)))
            if record_id in self.deal_of_invoice:
                links.append(("its deal in the CRM", crm_url(self.crm, "deal", self.deal_of_invoice[record_id])))
            elif client in self.crm_of_client:
                links.append(("buyer in the CRM", crm_url(self.crm, "client", self.crm_of_client[client])))
        elif entry["stream"] == DEALS_TO_INVOICES_STREAM:
            links.append(("deal in the CRM", crm_url(self.crm, "deal", record_id)))
            if record_id in self.invoice_of_deal:
                url = fakturownia_url(self.fakturownia, "invoice", self.invoice_of_deal[record_id])
                links.append(("its invoice in Fakturownia", url))
            elif client in self.fakturownia_of_client:
                url = fakturownia_url(self.fakturownia, "client", self.fakturownia_of_client[client])
                links.append(("client in Fakturownia", url))
        return [(label, url) for label, url in links if url]


def _payload(entry: dict[str, Any]) -> dict[str, Any]:
    return entry["payload"] if isinstance(entry["payload"], dict) else {}


def quarantine_section(store: StateStore, fakturownia: ApiAccount | None, crm: ApiAccount | None) -> dict[str, Any]:
    entries = store.open_quarantine_page(QUARANTINE_SHOWN)
    links = RecordLinks.read(store, entries, fakturownia, crm)
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        shown = ("stream", "record_id", "message", "attempts", "first_seen_at", "last_seen_at", "retry_requested_at")
        by_reason.setdefault(entry["reason"], []).append(
            {
                **{key: entry[key] for key in shown},
                "retry_requested_by": entry["retry_requested_by"],
                "fields": key_fields(_payload(entry)),
                "links": links.of(entry),
                "dag_id": STREAM_DAGS.get(entry["stream"]),
            }
        )
    counts: dict[str, int] = {}
    for (reason, _stream), count in store.open_quarantine_summary().items():
        counts[reason] = counts.get(reason, 0) + count
    total = sum(counts.values())
    return {
        "reasons": [
            {"reason": reason, "count": counts.get(reason, len(rows)), "entries": rows}
            for reason, rows in sorted(by_reason.items())
        ],
        "total": total,
        "shown": len(entries),
    }


# Client review ---------------------------------------------------------------------------------------------


def _client_card(record: Any, side: str, account: ApiAccount | None) -> dict[str, Any] | None:
    if not isinstance(record, dict):
        return None
    if side == "fakturownia":
        external = {"external_id": record["external_id"]} if record.get("external_id") else {}
        url = fakturownia_url(account, "client", record.get("id"))
    else:
        external = external_ids_of(record)
        url = crm_url(account, "client", record.get("id"))
    values = {name: record.get(name) for name in CLIENT_FIELDS if record.get(name) not in (None, "")}
    values.update({f"external id {key}": value for key, value in external.items()})
    return {"id": record.get("id"), "shown": values, "url": url}


def _suggestion_url(suggestion: dict[str, Any], fakturownia: ApiAccount | None, crm: ApiAccount | None) -> str | None:
    if suggestion.get("side") == "fakturownia":
        return fakturownia_url(fakturownia, "client", suggestion.get("id"))
    return crm_url(crm, "client", suggestion.get("id"))


def compared_fields(fakturownia: dict[str, Any] | None, crm: dict[str, Any] | None) -> list[str]:
    """The fields either record has, in `CLIENT_FIELDS` order then external ids: the rows of the comparison."""
    present = {name for card in (fakturownia, crm) if card for name in card["shown"]}
    return [name for name in CLIENT_FIELDS if name in present] + sorted(
        name for name in present if name not in CLIENT_FIELDS
    )


def link_candidates(entry: dict[str, Any]) -> list[tuple[int, int]]:
    """The (Fakturownia id, CRM id) pairs a person may link for this entry: its subject with the record on the
    other side that the entry names, or with any look-alike of the other side it suggests."""
    side, _, raw = str(entry["subject"]).partition(":")
    own = as_id(raw)
    if own is None or side not in ("fakturownia", "crm"):
        return []
    other_side = "crm" if side == "fakturownia" else "fakturownia"
    others = [as_id(entry.get(f"{other_side}_client_id"))]
    others += [
        as_id(s.get("id"))
        for s in entry.get("suggestions") or []
        if isinstance(s, dict) and s.get("side") == other_side
    ]
    pairs: list[tuple[int, int]] = []
    for other in others:
        if other is None:
            continue
        pair = (own, other) if side == "fakturownia" else (other, own)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def others_decisions(entry: dict[str, Any], linked: list[tuple[int, int]]) -> list[str]:
    """The decisions besides 'link' the page offers for an entry: 'different' only for a pair it names on both sides
    (`PAIR_DECISIONS`: a same-side duplicate or a record alone has no pair to tell apart) that is not linked (a
    linked pair stays linked); 'ignore' always."""
    named = entry.get("fakturownia_client_id") is not None and entry.get("crm_client_id") is not None
    return ["different", "ignore"] if named and not linked else ["ignore"]


def evidence_mark(entry: dict[str, Any]) -> str:
    """A short fingerprint of what a review entry rests on (`review_evidence`: reason, records, candidates). The
    page puts it in every decision form, so a decision is stored only about the entry the person saw: a client
    sync that moved the entry on (another candidate, another reason) while the page was open makes it stale."""
    shown = json.dumps(review_evidence(entry), separators=(",", ":"))
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


def review_section(store: StateStore, fakturownia: ApiAccount | None, crm: ApiAccount | None) -> dict[str, Any]:
    rows = store.open_client_review_page(REVIEW_SHOWN)
    candidates = {row["subject"]: link_candidates(row) for row in rows}
    pairs = [pair for offered in candidates.values() for pair in offered]
    crm_of = store.crm_clients_linked_to(f for f, _c in pairs)
    fakturownia_of = store.fakturownia_clients_linked_to(c for _f, c in pairs)
    pending: dict[str, dict[str, Any]] = {}
    for decision in store.pending_review_decisions():
        pending[decision["subject"]] = decision  # oldest first: the latest decision of a subject wins
    entries = []
    for row in rows:
        suggestions = [s for s in row.get("suggestions") or [] if isinstance(s, dict)]
        linked = [(f, c) for f, c in candidates[row["subject"]] if crm_of.get(f) == c]
        f_card = _client_card(row["fakturownia_record"], "fakturownia", fakturownia)
        c_card = _client_card(row["crm_record"], "crm", crm)
        entries.append(
            {
                "subject": row["subject"],
                "evidence": evidence_mark(row),
                "reason": row["reason"],
                "message": row["message"],
                "fakturownia_client_id": row["fakturownia_client_id"],
                "crm_client_id": row["crm_client_id"],
                "fakturownia": f_card,
                "crm": c_card,
                "compared": compared_fields(f_card, c_card),
                "suggestions": [{**s, "url": _suggestion_url(s, fakturownia, crm)} for s in suggestions],
                # a pair already linked is shown as such; a record linked to another one cannot be linked again
                "linked": linked,
                "candidates": [
                    (f, c) for f, c in candidates[row["subject"]] if f not in crm_of and c not in fakturownia_of
                ],
                "others": others_decisions(row, linked),
                "pending": pending.get(row["subject"]),
                "first_seen_at": row["first_seen_at"],
                "last_seen_at": row["last_seen_at"],
            }
        )
    return {"entries": entries, "total": store.count_open_client_review(), "audit": store.review_decision_audit(50)}


# Integration check -----------------------------------------------------------------------------------------


def check_section(store: StateStore) -> dict[str, Any] | None:
    return store.latest_integration_check()
