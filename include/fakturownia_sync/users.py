"""Users of both systems and who is who: the pairing table, and the CRM user behind a Fakturownia user.

Why a pairing at all
    A deal made from an invoice should belong to the person who issued the invoice (`responsible_id`), but
    the two systems number their users independently. DESIGN.md ("Users") fixes the rule: two users are the
    same person when their login AND their e-mail are identical (the e-mail case-folded and trimmed). A
    shared e-mail with another login, or a shared login with another e-mail, is reported, never paired:
    guessing would hand one person's deals to another.

Where the users come from
    Fakturownia documents no API that lists users, so its users are the config key `fakturownia_users`.
    The CRM documents its user list only in the legacy XML API (`/app/users/team.xml`); `/app/users/team.json`
    is plausible but unverified (reference/sugester-api.md §3.8). So `crm_users` asks for it and treats a 404,
    a refusal or an answer that is not a list of users as "the CRM side is unknown": nothing is paired, the
    table says why, and no run fails over it. An unreachable CRM or a wrong token still fails the caller,
    as every other call does.

The table is computed here, once, so the UI page and the integration check show the same thing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fakturownia_sync.config import FakturowniaUser
from fakturownia_sync.errors import ApiMalformed, ApiNotFound, ApiRejected
from fakturownia_sync.ids import as_id
from fakturownia_sync.sugester_client import SugesterClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class User:
    """One user of one system: its id there, login and e-mail as that system spells them."""

    id: int
    login: str
    email: str
    name: str = ""

    @property
    def login_key(self) -> str:
        return self.login.strip()

    @property
    def email_key(self) -> str:
        return self.email.strip().casefold()


@dataclass(frozen=True)
class CrmUsers:
    """The CRM's users, or `known=False` with the reason when the CRM would not list them."""

    users: tuple[User, ...] = ()
    known: bool = True
    reason: str = ""


@dataclass
class Pairing:
    """The pairing table: each user of either side lands in exactly one row group."""

    paired: list[tuple[User, User]] = field(default_factory=list)  # (Fakturownia, CRM)
    only_in_fakturownia: list[User] = field(default_factory=list)
    only_in_crm: list[User] = field(default_factory=list)
    same_email_other_login: list[tuple[User, User]] = field(default_factory=list)
    same_login_other_email: list[tuple[User, User]] = field(default_factory=list)
    crm_known: bool = True
    crm_unknown_reason: str = ""

    def crm_user_for(self, fakturownia_user_id: int | None) -> int | None:
        """The CRM user id paired with this Fakturownia user id, or None."""
        if fakturownia_user_id is None:
            return None
        for fakturownia, crm in self.paired:
            if fakturownia.id == fakturownia_user_id:
                return crm.id
        return None

    def counts(self) -> dict[str, int]:
        return {
            "paired": len(self.paired),
            "only_in_fakturownia": len(self.only_in_fakturownia),
            "only_in_crm": len(self.only_in_crm),
            "same_email_other_login": len(self.same_email_other_login),
            "same_login_other_email": len(self.same_login_other_email),
        }

    def rows(self) -> list[dict[str, Any]]:
        """The table as rows (status, Fakturownia user, CRM user), for a UI page or a report."""

        def cell(user: User | None) -> dict[str, Any] | None:
            return None if user is None else {"id": user.id, "login": user.login, "email": user.email}

        rows = [{"status": "paired", "fakturownia": cell(f), "crm": cell(c)} for f, c in self.paired]
        rows += [{"status": "same_email_other_login", "fakturownia": cell(f), "crm": cell(c)}
                 for f, c in self.same_email_other_login]  # fmt: skip
        rows += [{"status": "same_login_other_email", "fakturownia": cell(f), "crm": cell(c)}
                 for f, c in self.same_login_other_email]  # fmt: skip
        rows += [{"status": "only_in_fakturownia", "fakturownia": cell(f), "crm": None}
                 for f in self.only_in_fakturownia]  # fmt: skip
        rows += [{"status": "only_in_crm", "fakturownia": None, "crm": cell(c)} for c in self.only_in_crm]
        if not self.crm_known:
            rows.append({"status": "crm_users_unknown", "fakturownia": None, "crm": None,
                         "reason": self.crm_unknown_reason})  # fmt: skip
        return rows


def fakturownia_users(configured: list[FakturowniaUser]) -> list[User]:
    """Fakturownia's users as the config key `fakturownia_users` lists them."""
    return [User(user.id, user.login, user.email) for user in configured]


def _crm_user(raw: Any) -> User | None:
    if not isinstance(raw, dict):
        return None
    user_id = as_id(raw.get("id"))
    if user_id is None:
        return None
    return User(user_id, str(raw.get("login") or ""), str(raw.get("email") or ""), str(raw.get("name") or ""))


def crm_users(crm: SugesterClient) -> CrmUsers:
    """The CRM's users from `/app/users/team.json`, or unknown (with the reason) when the CRM has no such
    call: a 404, a refusal, an answer that is not JSON or not a list of users. The endpoint is undocumented
    as JSON, so the code must work whether or not the CRM answers it."""
    try:
        answer = crm.team_users()
    except ApiNotFound:
        return CrmUsers(known=False, reason="the CRM has no /app/users/team.json (HTTP 404)")
    except ApiRejected as exc:
        return CrmUsers(known=False, reason=f"the CRM refused /app/users/team.json ({exc.message})")
    except ApiMalformed:
        return CrmUsers(known=False, reason="the CRM's /app/users/team.json did not answer with JSON")
    if not isinstance(answer, list):
        return CrmUsers(known=False, reason="the CRM's /app/users/team.json answered something other than a list")
    users = [_crm_user(item) for item in answer]
    if any(user is None for user in users):
        return CrmUsers(known=False, reason="the CRM's /app/users/team.json listed records without a numeric id")
    return CrmUsers(tuple(user for user in users if user is not None))


def pair_users(fakturownia: list[User], crm: CrmUsers) -> Pairing:
    """The pairing table: paired when login AND e-mail (case-folded) are identical, else reported."""
    pairing = Pairing(crm_known=crm.known, crm_unknown_reason=crm.reason)
    if not crm.known:
        pairing.only_in_fakturownia = list(fakturownia)
        return pairing
    by_both: dict[tuple[str, str], list[User]] = {}
    for user in crm.users:
        by_both.setdefault((user.login_key, user.email_key), []).append(user)
    matched_crm: set[int] = set()
    unpaired: list[User] = []
    for user in fakturownia:
        candidates = by_both.get((user.login_key, user.email_key), [])
        # One pair per person: a login+e-mail that two CRM users share pairs nobody (it is not one person).
        if user.login_key and user.email_key and len(candidates) == 1 and candidates[0].id not in matched_crm:
            pairing.paired.append((user, candidates[0]))
            matched_crm.add(candidates[0].id)
        else:
            unpaired.append(user)
    loose_crm = [user for user in crm.users if user.id not in matched_crm]
    near_crm: set[int] = set()
    for user in unpaired:
        same_email = [c for c in loose_crm if user.email_key and c.email_key == user.email_key]
        same_login = [c for c in loose_crm if user.login_key and c.login_key == user.login_key]
        other_login = [(user, c) for c in same_email if c.login_key != user.login_key]
        other_email = [(user, c) for c in same_login if c.email_key != user.email_key]
        pairing.same_email_other_login += other_login
        pairing.same_login_other_email += other_email
        near_crm |= {c.id for c in same_email + same_login}
        if not other_login and not other_email:
            pairing.only_in_fakturownia.append(user)  # nothing like it, or only an ambiguous exact twin
    pairing.only_in_crm = [user for user in loose_crm if user.id not in near_crm]
    return pairing


class ResponsibleUsers:
    """The CRM user responsible for a deal made from an invoice: the one paired with the invoice's issuing
    user (`user_id`). The pairing is computed once per run, on first use, and only when `fakturownia_users`
    lists anyone (with nobody listed, nobody can be paired and the CRM is not asked)."""

    def __init__(self, crm: SugesterClient, configured: list[FakturowniaUser]) -> None:
        self.crm = crm
        self.configured = configured
        self._pairing: Pairing | None = None
        self._lock = threading.Lock()

    def pairing(self) -> Pairing:
        with self._lock:
            if self._pairing is None:
                own = fakturownia_users(self.configured)
                crm = crm_users(self.crm) if own else CrmUsers()
                self._pairing = pair_users(own, crm)
                if not self._pairing.crm_known:
                    log.warning("CRM users unknown (%s): deals get no responsible person", crm.reason)
            return self._pairing

    def crm_user_for(self, fakturownia_user_id: Any) -> int | None:
        """The paired CRM user id for an invoice's `user_id` (any spelling of an id), else None."""
        user_id = as_id(fakturownia_user_id)
        return None if user_id is None else self.pairing().crm_user_for(user_id)
