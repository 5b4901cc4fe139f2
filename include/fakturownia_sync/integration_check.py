"""`fakturownia_integration_check`: is this deployment set up soundly? (DESIGN.md "Health")

It reads each side once (`gather_fakturownia`, `gather_crm`: plain JSON facts, so each side can be read in
its own task under its own API pool) and turns the facts into one report (`build_report`):

    {"ok": bool,
     "sections": [{"title": str, "ok": bool | None,
                   "items": [{"ok": bool | None, "text": str, "details": <JSON or None>}]}],
     "checklist": [{"text": str, "fakturownia": settings path, "crm": settings path}],
     "problems": [the text of every item whose ok is False]}

`ok` True: as it should be; False: a problem (the check fails and the text says what to do); None: unknown or
for information only. The checklist is what no API shows (Multipass login settings), for a person to compare.
The report holds no secret: no API token, and of a webhook's own token only whether it is the right one.
The rules of each section are in `integration_findings`.
"""

from __future__ import annotations

import hmac
from typing import Any

from fakturownia_sync.account_check import access_problem, expected_account_problem
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.errors import ApiAuthError, ApiError, ApiNotFound
from fakturownia_sync.fakturownia_client import FakturowniaClient
from fakturownia_sync.ids import as_id
from fakturownia_sync.integration_findings import (
    FOREIGN_DEALS_SHOWN,
    WEBHOOK_CONNECTION,
    department_items,
    foreign_deal,
    item,
    missing_webhook_kinds,
    user_items,
    vendor_integration_items,
    webhook_items,
)
from fakturownia_sync.redaction import redact
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.users import crm_users, fakturownia_users, pair_users

FAKTUROWNIA_CONNECTION = "fakturownia_default"
CRM_CONNECTION = "sugester_default"

_FA_LOGIN = (
    "Fakturownia: Ustawienia > Ustawienia konta > Integracja > Logowanie "
    "(Settings > Account settings > Integration > Logging in)"
)
_CRM_LOGIN = "CRM: Ustawienia > Ustawienia konta > Integracje (Settings > Account Settings > Integrations)"
CHECKLIST: list[dict[str, str]] = [
    {
        "text": "Login type is the same in both systems: 'Multipass SSO' in both, or in neither.",
        "fakturownia": f"{_FA_LOGIN} > Typ logowania (Login type)",
        "crm": f"{_CRM_LOGIN} > SSO login method",
    },
    {
        "text": "Both Multipass URLs lead to the same login server (your SSO application); Fakturownia's URL must "
        "contain 'multipass_server_login'.",
        "fakturownia": f"{_FA_LOGIN} > Multipass URL",
        "crm": f"{_CRM_LOGIN} > Multipass SSO > login URL",
    },
    {
        "text": "Each system's Multipass token is the one your login server encrypts with for that system (they are "
        "private: compare them in the login server's settings, never in a ticket or chat).",
        "fakturownia": f"{_FA_LOGIN} > MultiPASS token",
        "crm": f"{_CRM_LOGIN} > Multipass SSO > multipass token",
    },
    {
        "text": "Your login server sends each person the same login and e-mail to both systems (users are paired by "
        "identical login AND e-mail; the CRM takes the e-mail only at the first Multipass login).",
        "fakturownia": "Fakturownia: Ustawienia > Użytkownicy (Settings > Users)",
        "crm": "CRM: Ustawienia > Użytkownicy (Settings > Users)",
    },
]


# Reading each side -----------------------------------------------------------------------------------------


def _account_facts(client: FakturowniaClient | SugesterClient, expected: str | None, conn_id: str, key: str) -> dict:
    account = client.account
    problem = expected_account_problem(account, expected, conn_id, key) or access_problem(client, conn_id)
    return {"api": account.api, "name": account.name, "base_url": account.base_url, "problem": problem}


def not_connected(api: str, problem: str) -> dict[str, Any]:
    """The facts of a side whose client could not even be built (a connection missing or unusable): the
    problem says which connection and field to fix; nothing else of that side is known."""
    account = {"api": api, "name": None, "base_url": None, "problem": problem}
    return {"account": account, "departments": None, "webhooks": None, "pairing": None, "deals": None}


def _departments(client: FakturowniaClient | SugesterClient) -> dict[str, Any]:
    try:
        listed = client.departments()
    except ApiError as exc:
        return {"list": None, "error": f"{exc.api} departments could not be read ({exc.message})"}
    rows = [{"id": as_id(d.get("id")), "name": d.get("name"), "shortcut": d.get("shortcut")} for d in listed]
    return {"list": rows, "error": None}


def gather_fakturownia(
    client: FakturowniaClient,
    config: SyncConfig,
    *,
    conn_id: str = FAKTUROWNIA_CONNECTION,
    webhook_url: str | None = None,
    webhook_token: str | None = None,
    register_webhooks: bool = False,
) -> dict[str, Any]:
    """The Fakturownia side: the account, its departments, its webhooks; with `register_webhooks`, the
    missing ones of `integration_findings.WEBHOOK_KINDS` are registered to `webhook_url` with `webhook_token`."""
    expected = config.expected_accounts.fakturownia
    facts: dict[str, Any] = {"account": _account_facts(client, expected, conn_id, "expected_accounts.fakturownia")}
    if facts["account"]["problem"]:
        return {**facts, "departments": None, "webhooks": None}
    facts["departments"] = _departments(client)
    facts["webhooks"] = _webhooks(client, webhook_url, webhook_token, register_webhooks)
    return facts


def _webhook_row(raw: dict[str, Any], token: str | None) -> dict[str, Any]:
    """A webhook as the report shows it: its own token never, only whether it is the receiver's."""
    own = raw.get("api_token")
    matches = None if token is None or own is None else hmac.compare_digest(str(own).encode(), token.encode())
    active = raw.get("active", True)
    return {
        "id": as_id(raw.get("id")),
        "kind": str(raw.get("kind") or ""),
        "url": redact(str(raw.get("url") or ""), (token or "",)),
        "active": active if isinstance(active, bool) else str(active).lower() in ("1", "true", "yes"),
        "token_matches": matches,
    }


def _webhooks(client: FakturowniaClient, target: str | None, token: str | None, register: bool) -> dict[str, Any]:
    facts: dict[str, Any] = {"known": True, "reason": "", "registered": [], "created": [], "problems": []}
    try:
        listed = client.list_webhooks()
    except (ApiNotFound, ApiAuthError) as exc:
        facts.update(known=False, reason=f"Fakturownia answered HTTP {exc.status} to GET /webhooks.json")
    except ApiError as exc:
        facts.update(known=False, reason=f"they could not be read ({exc.message})")
    else:
        facts["registered"] = [_webhook_row(w, token) for w in listed if isinstance(w, dict)]
    if not register:
        return facts
    refused = "register_webhooks is on, but {}: nothing was registered."
    if not facts["known"]:
        facts["problems"].append(refused.format(facts["reason"]))
    elif not target:
        facts["problems"].append(refused.format("no webhook URL is set (Param webhook_url or config key webhook_url)"))
    elif not token:
        why = f"connection '{WEBHOOK_CONNECTION}' has no token in its password (the receiver checks it)"
        facts["problems"].append(refused.format(why))
    else:
        for kind in missing_webhook_kinds(facts["registered"], target):
            try:
                row = _webhook_row(client.create_webhook(kind, target, token), token)
            except ApiError as exc:
                facts["problems"].append(f"Registering the {kind} webhook failed: {redact(exc.message, (token,))}")
                continue
            facts["created"].append(row)
            facts["registered"].append(row)
    return facts


def gather_crm(
    client: SugesterClient,
    config: SyncConfig,
    *,
    conn_id: str = CRM_CONNECTION,
    fakturownia_base_url: str | None = None,
) -> dict[str, Any]:
    """The CRM side: the account, its departments, the user pairing, and every deal scanned for links to
    Fakturownia invoices this sync did not make (`fakturownia_base_url`: the Fakturownia account's address)."""
    facts: dict[str, Any] = {
        "account": _account_facts(client, config.expected_accounts.sugester, conn_id, "expected_accounts.sugester")
    }
    if facts["account"]["problem"]:
        return {**facts, "departments": None, "pairing": None, "deals": None}
    facts["departments"] = _departments(client)
    try:
        pairing = pair_users(fakturownia_users(config.fakturownia_users), crm_users(client))
        facts["pairing"] = {
            "rows": pairing.rows(),
            "crm_known": pairing.crm_known,
            "reason": pairing.crm_unknown_reason,
        }
    except ApiError as exc:
        facts["pairing"] = {"rows": [], "crm_known": False, "reason": f"they could not be read ({exc.message})"}
    facts["deals"] = _foreign_deals(client, fakturownia_base_url)
    return facts


def _foreign_deals(client: SugesterClient, fakturownia_base_url: str | None) -> dict[str, Any]:
    scanned, foreign = 0, []
    try:
        for deal in client.iter_deals():
            scanned += 1
            if foreign_deal(deal, fakturownia_base_url):
                foreign.append({"id": as_id(deal.get("id")), "name": deal.get("name"), "url": deal.get("url")})
    except ApiError as exc:
        return {"error": exc.message, "scanned": scanned, "foreign": [], "foreign_count": 0}
    return {"error": None, "scanned": scanned, "foreign": foreign[:FOREIGN_DEALS_SHOWN], "foreign_count": len(foreign)}


# The report -----------------------------------------------------------------------------------------------


def _section(title: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    oks = [entry["ok"] for entry in items]
    ok = False if False in oks else (True if True in oks else None)
    return {"title": title, "ok": ok, "items": items}


def _account_items(side: str, facts: dict[str, Any] | None) -> list[dict[str, Any]]:
    if facts is None:
        return [item(False, f"The {side} side was not checked: its task failed (see its log).")]
    account = facts["account"]
    if account["problem"]:
        return [item(False, account["problem"])]
    return [item(True, f"{account['api']} account '{account['name']}' ({account['base_url']}) answers to its token.")]


def _part(facts: dict[str, Any] | None, key: str) -> Any:
    return None if facts is None else facts.get(key)


def _listed(facts: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    departments = _part(facts, "departments")
    return None if departments is None else departments["list"]


def build_report(
    fakturownia: dict[str, Any] | None, crm: dict[str, Any] | None, config: SyncConfig, *, webhook_url: str | None
) -> dict[str, Any]:
    """The report of both sides' facts (None: that side could not be read at all)."""
    department_errors = [
        d["error"] for d in (_part(fakturownia, "departments"), _part(crm, "departments")) if d and d["error"]
    ]
    departments = department_items(_listed(fakturownia), _listed(crm), config)
    if department_errors:
        departments = [item(None, f"Departments not compared: {'; '.join(department_errors)}.")]
    sections = [
        _section("Accounts", _account_items("Fakturownia", fakturownia) + _account_items("CRM", crm)),
        _section("Departments", departments),
        _section("Users", user_items(_part(crm, "pairing"), config)),
        _section("The CRM's built-in Fakturownia integration", vendor_integration_items(_part(crm, "deals"))),
        _section("Fakturownia webhooks", webhook_items(_part(fakturownia, "webhooks"), webhook_url)),
    ]
    problems = [entry["text"] for section in sections for entry in section["items"] if entry["ok"] is False]
    return {"ok": not problems, "sections": sections, "checklist": CHECKLIST, "problems": problems}


def unusable_config_report(problem: str) -> dict[str, Any]:
    """The report when the check cannot even start: the config Variable (or a Param) does not validate. Every
    other section is judged against the config (expected accounts, department map, users), so this problem is the
    report; it is stored all the same, so the page shows it instead of an older check that found nothing."""
    sections = [_section("Configuration", [item(False, problem)])]
    return {"ok": False, "sections": sections, "checklist": CHECKLIST, "problems": [problem]}


_MARKS = {True: "ok ", False: "!! ", None: "?? "}


def render_report(report: dict[str, Any]) -> str:
    """The report as text for the task log: one line per finding, marked ok / !! (problem) / ?? (unknown)."""
    verdict = "all good" if report["ok"] else f"{len(report['problems'])} problem(s)"
    lines = [f"Integration check: {verdict}"]
    for section in report["sections"]:
        lines.append(f"== {section['title']} ==")
        lines += [f"  {_MARKS[entry['ok']]}{entry['text']}" for entry in section["items"]]
    lines.append("== To check by hand (no API shows these) ==")
    for entry in report["checklist"]:
        lines += [f"  [ ] {entry['text']}", f"      {entry['fakturownia']}", f"      {entry['crm']}"]
    return "\n".join(lines)
