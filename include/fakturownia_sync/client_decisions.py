"""One client decision for every DAG: what DESIGN.md "Client decisions" says, as the engine applies it.

| evidence, for a client with no link yet                               | decision                                 |
|-----------------------------------------------------------------------|------------------------------------------|
| external ids name each other, no strong key contradicts them          | link                                     |
| external id contradicted (valid NIPs differ, or e-mails differ and no | ignored; the weaker keys decide          |
| NIP agrees)                                                           |                                          |
| the same valid NIP, one-to-one over both whole bases                  | link                                     |
| the same e-mail, one-to-one, valid NIPs not different, names related  | link                                     |
| any evidence pointing at several records, or only at linked ones      | refused: review / quarantine, no write   |
| the same NIP or e-mail twice in one system, not in the other          | refused (`duplicate_in_<system>`)        |
| different valid NIPs                                                  | never linked, never held                 |
| an invalid or junk tax id (`0000000000`, "brak")                      | no tax id; a data-quality warning        |
| no counterpart                                                        | created on the other side, under a claim |
| no counterpart, looks like a record whose strong keys tell it apart   | created + `possible_duplicate` note      |
| no counterpart, looks like a record nothing tells it apart from       | held (`possible_duplicate`)              |

The matching rules themselves are `bulk_matching.match_client_bases` (one-to-one on both sides, links
exclusive, external ids vetoed by contradicting keys, duplicates reported) over the keys of `client_keys`.
The client sync runs it over both whole bases; the invoices sync asks `client_matching.CrmClientIndex`,
which runs the same function over the one record's component (every record it shares a key with, and
theirs), so both reach the same decision; `ClientDecision` is that decision, read off the matcher's output.
The creation rules (when a resemblance holds a client back) and the key of an anonymous buyer are here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fakturownia_sync.bulk_matching import BulkMatch
from fakturownia_sync.client_keys import email_key, name_key, post_code_key, tax_key

LINK, CREATE = "link", "create"
WALK_IN_BUYER_KEY = "anonymous:walk-in"


@dataclass(frozen=True)
class ClientDecision:
    """One record's decision: its counterpart (`crm_client_id` / partner id), a refusal, or "create it"."""

    partner_id: int | None
    evidence: str = ""  # "link", "external_id", "nip", "email" for a counterpart; "" otherwise
    reason: str = ""  # the review reason of a refusal
    candidates: tuple[int, ...] = field(default_factory=tuple)

    @property
    def refused(self) -> bool:
        return bool(self.reason)

    @property
    def create(self) -> bool:
        return self.partner_id is None and not self.refused

    @property
    def outcome(self) -> tuple[Any, ...]:
        """Comparable form (used by tests holding the two entry points to one answer)."""
        if self.refused:
            return ("refused", self.reason, self.candidates)
        return (CREATE,) if self.partner_id is None else ("partner", self.partner_id, self.evidence)


def decision_of(match: BulkMatch, side: str, record_id: int, partner_by_link: dict[int, int]) -> ClientDecision:
    """The decision `match` made for one record of `side` ("fakturownia" or "crm")."""
    own, other = ("fakturownia_id", "crm_id") if side == "fakturownia" else ("crm_id", "fakturownia_id")
    found = match.matches[match.matches[own] == record_id]
    if not found.empty:
        return ClientDecision(int(found[other].iloc[0]), str(found["evidence"].iloc[0]))
    reviewed = match.review[(match.review["side"] == side) & (match.review["id"] == record_id)]
    if not reviewed.empty:
        row = reviewed.iloc[0]
        return ClientDecision(None, reason=str(row["reason"]), candidates=tuple(int(c) for c in row["candidates"]))
    if record_id in partner_by_link:
        return ClientDecision(partner_by_link[record_id], LINK)
    return ClientDecision(None)


# Creating: when a resemblance holds a client back --------------------------------------------------------


def told_apart(record: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether strong keys say two records are two clients: both valid tax ids and different, or (with no
    tax id agreeing) both e-mails and different. The external-id veto of `bulk_matching` is the same rule."""
    tax_a, tax_b = tax_key(record.get("tax_no")), tax_key(other.get("tax_no"))
    if tax_a is not None and tax_b is not None:
        return tax_a != tax_b
    mail_a, mail_b = email_key(record.get("email")), email_key(other.get("email"))
    return mail_a is not None and mail_b is not None and mail_a != mail_b


def holds_back(record: dict[str, Any], lookalikes: list[dict[str, Any]]) -> bool:
    """An unmatched record is held only when it closely resembles a record nothing tells it apart from;
    a resemblance that strong keys contradict is a `possible_duplicate` note, and the record is created."""
    return any(not told_apart(record, other) for other in lookalikes)


# Anonymous buyers ----------------------------------------------------------------------------------------


ANONYMOUS_MARK = "fakturownia_sync"  # the note of a CRM client created for an anonymous buyer names its key


def anonymous_mark(key: str) -> str:
    """What the note of the CRM client made for the anonymous buyer `key` carries, to be found again by."""
    return f"[{ANONYMOUS_MARK} {key}]"


def made_for_an_anonymous_buyer(note: object) -> bool:
    """A CRM client this product made for a buyer typed on a document (no card, tax id or e-mail). It stands for
    buyers that live in Fakturownia as documents only, so it is never copied back as a Fakturownia client."""
    return isinstance(note, str) and f"[{ANONYMOUS_MARK} anonymous:" in note


def anonymous_buyer_key(name: str, street: str, post_code: str, city: str) -> str:
    """The claim key of a buyer with no client card, no tax id and no e-mail: its normalised name and address,
    or one fixed walk-in key when the document names nobody."""
    who = name_key(name)
    if not who:
        return WALK_IN_BUYER_KEY
    where = " ".join(filter(None, (name_key(street), post_code_key(post_code) or "", name_key(city))))
    return f"anonymous:{who}|{where}"[:320]
