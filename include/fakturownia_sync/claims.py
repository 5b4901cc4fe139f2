"""Create a record at most once, however many processes reach it and by whatever evidence: create under claim.

Every create the sync makes (a CRM client for a Fakturownia client or a buyer, a Fakturownia client for a CRM
client, a CRM deal for an invoice) goes through `create_under_claim`. The protocol:

1. **Claim every key at once.** The caller passes all the evidence keys of the record: for a company its
   client card (`fakturownia:<id>`), its NIP (`nip:<NIP>`) and its e-mail (`email:<address>`); for a CRM
   client's copy `crm:<id>` and the same NIP/e-mail keys; for a deal `invoice:<id>`. The state DB takes all of
   them in one transaction or none (`StateStore.claim_create`). Two processes that reach one company by
   different evidence (one by its client card, one by the buyer's NIP on an invoice without a card) share at
   least one key, so only one of them gets the claim. Keys are compared as given: normalise them first
   (`client_keys`), or the same NIP written two ways is two keys.
2. **Held by someone else.** A confirmed holder means the record exists: the outcome is `found` with its id
   (link to it). An unconfirmed holder that is neither ours nor stale is a create in flight elsewhere: the
   outcome is `held_by_other`, and the caller defers the record to a later run.
3. **Take-over only after the window.** An unconfirmed claim older than `STALE_CLAIM_MINUTES` may be taken
   over, again all keys at once. The window exists because the holder may still be sending its create:
   every request has a hard deadline well inside the window (`timing`), so once the window has passed that
   create has either landed or been abandoned, and a look-up tells which. Taking over any earlier could let
   both creates land. Our own unconfirmed claim (an earlier try of the same run) is looked up at once, but
   sent again before the window only when the server answered that try (`end_create_attempt`): a create
   that got no answer may still be applied after the look-up found nothing.
4. **Look before creating again.** After a take-over, `find_existing()` asks the target system whether the
   earlier attempt's record is there (by external id, NIP, e-mail); if so the claim is confirmed with it and
   the outcome is `found`. Only when it is not there is the record created.
5. **A lost answer is never retried blindly.** `create()` raising `AmbiguousWriteError` means the server may
   or may not have made the record. The claim is left unconfirmed and the outcome is `unconfirmed`; the next
   attempt goes through step 3-4 and finds the record if it was made. `ApiRejected` means nothing was made:
   the claim is released (its keys freed) and the error re-raised for the caller to quarantine the record.
   Any other error leaves the claim unconfirmed, as a lost answer does, and is re-raised.

Told apart: a key such as an e-mail may be shared by different companies (an accountant's address on the
cards of several clients). A holder whose NIP differs from ours (`nip:` keys on both sides, none in common) is
another company, as the matcher says (`bulk_matching`): the keys it holds are dropped from our claim instead
of deferring to it or taking its record, and our NIP still holds our company.

Owners: the owner names a run (e.g. `dag_id/run_id`). Because a run may take over its own claims at once (a
retried task finishing what its failed try began), threads of one run must not race on the same keys: the
engines serialise them in process with `KeyedLocks` over the same keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from fakturownia_sync.client_keys import email_key, tax_key
from fakturownia_sync.errors import AmbiguousWriteError, ApiRejected
from fakturownia_sync.ids import as_id
from fakturownia_sync.state import ClaimAttempt, CreateClaim, StateStore
from fakturownia_sync.timing import STALE_CLAIM_MINUTES

log = logging.getLogger(__name__)

IDENTITY = "nip:"  # a key only one company has: two holders with different ones are different companies

CRM_CLIENT = "crm_client"
FAKTUROWNIA_CLIENT = "fakturownia_client"
CRM_DEAL = "crm_deal"
FAKTUROWNIA_INVOICE = "fakturownia_invoice"  # an invoice for a CRM deal, keyed `deal:<id>`

Status = Literal["created", "found", "held_by_other", "unconfirmed"]


@dataclass(frozen=True)
class ClaimOutcome:
    """What became of one create: `record_id` for created/found, `holder` (its owner) for held_by_other."""

    status: Status
    record_id: int | None = None
    holder: str | None = None

    @classmethod
    def created(cls, record_id: int) -> ClaimOutcome:
        return cls("created", record_id=record_id)

    @classmethod
    def found(cls, record_id: int) -> ClaimOutcome:
        return cls("found", record_id=record_id)

    @classmethod
    def held_by_other(cls, owner: str) -> ClaimOutcome:
        return cls("held_by_other", holder=owner)

    @classmethod
    def unconfirmed(cls) -> ClaimOutcome:
        return cls("unconfirmed")


def company_keys(own_key: str | None, tax_no: str | None = None, email: str | None = None) -> list[str]:
    """Every evidence key of a company, normalised as the matcher normalises them (`client_keys`): `own_key`
    (its card `fakturownia:<id>`, `crm:<id>`, an anonymous buyer's `buyer:<key>`), `nip:<tax key>` and
    `email:<address>`. A junk or invalid tax id is no key, as it is no evidence to the matcher."""
    keys = [own_key] if own_key else []
    keys += [f"{IDENTITY}{key}"] if (key := tax_key(tax_no)) else []
    keys += [f"email:{key}"] if (key := email_key(email)) else []
    return keys


def invoice_key(invoice_id: int) -> str:
    """The key the CRM deal of an invoice is claimed under (target `CRM_DEAL`)."""
    return f"invoice:{int(invoice_id)}"


def invoice_of_key(key: str) -> int | None:
    """The invoice a `CRM_DEAL` claim key names, or None for another key."""
    return as_id(key.removeprefix("invoice:")) if key.startswith("invoice:") else None


def deal_key(deal_id: int) -> str:
    """The key the Fakturownia invoice of a CRM deal is claimed under (target `FAKTUROWNIA_INVOICE`)."""
    return f"deal:{int(deal_id)}"


def stale_cutoff(now: datetime | None = None, minutes: float = STALE_CLAIM_MINUTES) -> datetime:
    """Claims taken before this moment belong to a create that can no longer land."""
    return (now or datetime.now(UTC)) - timedelta(minutes=minutes)


def create_under_claim(
    store: StateStore,
    target: str,
    keys: Iterable[str],
    owner: str,
    *,
    find_existing: Callable[[], int | None],
    create: Callable[[], int],
    stale_before: datetime | None = None,
) -> ClaimOutcome:
    """Create the record of `target` (`CRM_CLIENT`, `FAKTUROWNIA_CLIENT`, `CRM_DEAL`) known by `keys` at most
    once across processes; see the module docstring for the protocol.

    `find_existing()` returns the id of the record in the target system, or None; `create()` writes it and
    returns its id. `stale_before` defaults to `STALE_CLAIM_MINUTES` ago.
    """
    keys = list(dict.fromkeys(keys))
    stale_before = stale_before or stale_cutoff()
    attempt = store.claim_create(target, keys, owner)
    for _ in range(len(keys)):  # each pass drops at least one key another company holds
        if attempt.claim is not None or not _told_apart(_holder(attempt), keys):
            break
        keys = _without_keys_of_others(store, target, keys)
        attempt = store.claim_create(target, keys, owner)
    if attempt.claim is not None:
        return _create(store, attempt.claim, create)
    settled = _settled_by(attempt, owner, stale_before)
    if settled is not None:
        return settled
    holder = _holder(attempt)
    if holder.owner == owner and holder.claimed_at >= stale_before:
        return _look_only(store, holder, find_existing)
    if _identities(keys):  # never merge another company's stale claim on a shared key into ours
        keys = _without_keys_of_others(store, target, keys)
    attempt = store.take_over_create(target, keys, owner, stale_before=stale_before)
    if attempt.claim is None:
        return _settled_by(attempt, owner, stale_before) or ClaimOutcome.held_by_other(_holder(attempt).owner)
    existing = find_existing()  # the earlier attempt's create may have landed: never create it twice
    if existing is not None:
        _confirm(store, attempt.claim, existing)
        return ClaimOutcome.found(existing)
    return _create(store, attempt.claim, create)


def _identities(keys: Iterable[str]) -> set[str]:
    return {key for key in keys if key.startswith(IDENTITY)}


def _told_apart(holder: CreateClaim, keys: list[str]) -> bool:
    """Whether the holder is another company that merely shares a weaker key with ours (different NIPs)."""
    ours, theirs = _identities(keys), _identities(holder.keys)
    return bool(ours and theirs and not ours & theirs)


def _without_keys_of_others(store: StateStore, target: str, keys: list[str]) -> list[str]:
    """Our keys less those held by other companies (told apart by NIP); every holder is looked at, so a
    take-over never merges another company's claim into ours. Our NIP is never dropped."""
    kept = []
    for key in keys:
        holder = store.create_claim(target, key)
        if holder is None or not _told_apart(holder, keys):
            kept.append(key)
    return kept


def _holder(attempt: ClaimAttempt) -> CreateClaim:
    if attempt.holder is None:
        raise RuntimeError("a claim attempt without a claim names its holder")
    return attempt.holder


def _settled_by(attempt: ClaimAttempt, owner: str, stale_before: datetime) -> ClaimOutcome | None:
    """The outcome the holder decides on its own (found, or held by another run), or None when it may be taken."""
    holder = _holder(attempt)
    if holder.created_id is not None:
        return ClaimOutcome.found(holder.created_id)
    if holder.owner != owner and holder.claimed_at >= stale_before:
        return ClaimOutcome.held_by_other(holder.owner)
    return None


def _look_only(store: StateStore, holder: CreateClaim, find_existing: Callable[[], int | None]) -> ClaimOutcome:
    """Our own earlier attempt got no answer and may still land: look for its record, but never send it again
    before the claim is stale (a slow server may apply it after our look-up found nothing)."""
    existing = find_existing()
    if existing is None:
        return ClaimOutcome.unconfirmed()
    _confirm(store, holder, existing)
    return ClaimOutcome.found(existing)


def _create(store: StateStore, claim: CreateClaim, create: Callable[[], int]) -> ClaimOutcome:
    try:
        record_id = int(create())
    except AmbiguousWriteError as exc:
        log.warning("%s %s: %s; the next attempt looks it up before creating again", claim.target, claim.keys, exc)
        if not exc.may_still_land:
            store.end_create_attempt(claim.id)  # the server answered: a look-up decides at once
        return ClaimOutcome.unconfirmed()
    except ApiRejected:
        store.release_create(claim.id)  # refused: nothing was created, the keys are free again
        raise
    _confirm(store, claim, record_id)
    return ClaimOutcome.created(record_id)


def _confirm(store: StateStore, claim: CreateClaim, record_id: int) -> None:
    if not store.confirm_create(claim.id, record_id):
        # Only possible when our create outlived the take-over window and another run confirmed first.
        log.error(
            "%s %s: another run confirmed this create while this one made %s", claim.target, claim.keys, record_id
        )
