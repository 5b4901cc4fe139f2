"""The rules of `fakturownia_integration_check`, one function per section of its report.

Each takes facts already read from the APIs (plain JSON, see `integration_check`) and the config, and returns
the section's items: `ok` True (as it should be), False (a problem: the check fails and says what to do),
None (unknown or for information: never fails the check). Nothing here calls an API.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fakturownia_sync.accounts import DOMAINS, FAKTUROWNIA
from fakturownia_sync.config import SyncConfig
from fakturownia_sync.deal_mapping import FAKTUROWNIA_INVOICE_KEY
from fakturownia_sync.departments import DepartmentMap, UnmappedDepartment
from fakturownia_sync.ids import as_id
from fakturownia_sync.sugester_client import external_ids_of

# The events the sync listens to (DESIGN.md "Assets and webhooks"); the `*:destroy` kinds are left out on
# purpose: deletions are never propagated.
WEBHOOK_KINDS = ("invoice:create", "invoice:update", "client:create", "client:update")
WEBHOOK_CONNECTION = "fakturownia_webhook"
WEBHOOK_SETTINGS = "Fakturownia: Ustawienia > Ustawienia konta > Integracja > Webhooki"
FOREIGN_DEALS_SHOWN = 20  # a report names this many of the foreign deals; the count covers them all


def item(ok: bool | None, text: str, details: Any = None) -> dict[str, Any]:
    return {"ok": ok, "text": text, "details": details}


def _named(department: dict[str, Any]) -> str:
    return f"'{department.get('name') or department.get('shortcut') or '?'}' ({department.get('id')})"


# Departments ----------------------------------------------------------------------------------------------


def department_items(
    fakturownia: list[dict[str, Any]] | None, crm: list[dict[str, Any]] | None, config: SyncConfig
) -> list[dict[str, Any]]:
    """Both sides' departments by name, each pair of `department_map` checked against them, and every
    department in no pair named (its records would be held as `unmapped_department`)."""
    if fakturownia is None or crm is None:
        return [item(None, "Departments not compared: an account did not answer (see Accounts).")]
    mapping = DepartmentMap(config)
    details = {
        "fakturownia": [_department_row(d, mapping, to_crm=True) for d in fakturownia],
        "crm": [_department_row(d, mapping, to_crm=False) for d in crm],
    }
    names = {"Fakturownia": {as_id(d.get("id")): d for d in fakturownia}, "CRM": {as_id(d.get("id")): d for d in crm}}
    if not mapping.synced:
        listed = "; ".join(
            f"{side}: {', '.join(_named(d) for d in found.values()) or 'none'}" for side, found in names.items()
        )
        return [item(None, f"department_map is empty: departments are not synced ({listed}).", details)]
    items = []
    for fk, crm_id in mapping.pairs():
        missing = [
            f"{side} has no department {i}"
            for side, i in (("Fakturownia", fk), ("CRM", crm_id))
            if i not in names[side]
        ]
        if missing:
            items.append(item(False, f"department_map pair {fk} ↔ {crm_id}: {' and '.join(missing)}; fix the pair."))
        else:
            items.append(item(True, f"Mapped: {_named(names['Fakturownia'][fk])} ↔ {_named(names['CRM'][crm_id])}."))
    targets = mapping.no_department_targets()
    for other, key in (
        ("CRM", "crm_department_id"),
        ("Fakturownia", "fakturownia_department_id"),
    ):
        target = targets[key]
        if target is not None and target not in names[other]:
            items.append(item(False, f"no_department.{key} is {target}, which {other} does not have."))
    for row in details["fakturownia"] + details["crm"]:
        if not row["mapped"]:
            held = "its records are held (unmapped_department) until it is mapped"
            items.append(item(False, f"{row['side']} department {_named(row)} is in no department_map pair: {held}."))
    return items


def _department_row(department: dict[str, Any], mapping: DepartmentMap, *, to_crm: bool) -> dict[str, Any]:
    department_id = as_id(department.get("id"))
    try:
        partner = mapping.to_crm(department_id) if to_crm else mapping.to_fakturownia(department_id)
        mapped = mapping.synced
    except UnmappedDepartment:
        partner, mapped = None, False
    side = "Fakturownia" if to_crm else "CRM"
    return {"side": side, "id": department_id, "name": department.get("name"), "mapped": mapped, "mapped_to": partner}


# Users ----------------------------------------------------------------------------------------------------


def user_items(pairing: dict[str, Any] | None, config: SyncConfig) -> list[dict[str, Any]]:
    """The pairing table (`users.Pairing.rows()`) read as findings: each Fakturownia user who is not paired
    is a problem that says what differs; CRM users with no Fakturownia user are listed for information."""
    if pairing is None:
        return [item(None, "Users not paired: the CRM account did not answer (see Accounts).")]
    rows = pairing["rows"]
    if not config.fakturownia_users:
        text = "Config key fakturownia_users lists nobody: no user can be paired, so deals get no responsible person."
        return [item(None, text, rows)]
    if not pairing["crm_known"]:
        return [item(None, f"CRM users unknown ({pairing['reason']}): nobody is paired.", rows)]
    items = []
    paired = [r for r in rows if r["status"] == "paired"]
    if paired:
        who = ", ".join(f"{r['fakturownia']['login']} ↔ CRM user {r['crm']['id']}" for r in paired)
        items.append(item(True, f"{len(paired)} user(s) paired (same login and e-mail): {who}.", paired))
    for row in rows:
        fk, crm = row.get("fakturownia"), row.get("crm")
        if row["status"] == "same_email_other_login":
            text = f"Fakturownia user '{fk['login']}' and CRM user '{crm['login']}' share the e-mail {fk['email']}"
            items.append(item(False, f"{text} but not the login: make the logins identical.", row))
        elif row["status"] == "same_login_other_email":
            text = f"Fakturownia user '{fk['login']}' and CRM user {crm['id']} share the login but not the e-mail"
            items.append(item(False, f"{text} ({fk['email']} / {crm['email']}): make the e-mails identical.", row))
        elif row["status"] == "only_in_fakturownia":
            text = f"Fakturownia user '{fk['login']}' ({fk['email']}) has no CRM user with that login and e-mail"
            items.append(item(False, f"{text}: their invoices' deals get no responsible person.", row))
    crm_only = [r["crm"] for r in rows if r["status"] == "only_in_crm"]
    if crm_only:
        logins = ", ".join(u["login"] or str(u["id"]) for u in crm_only)
        items.append(item(None, f"CRM users with no Fakturownia user in fakturownia_users: {logins}.", crm_only))
    return items


# The vendor's own integration ------------------------------------------------------------------------------


def links_to_fakturownia_invoice(url: Any, fakturownia_base_url: str | None) -> bool:
    """Whether a deal's `url` opens a Fakturownia invoice: an invoice page (`/invoices/<id>`) or its public
    view (`/invoice/<token>`) on the account's host or any `*.fakturownia.pl` account."""
    if not isinstance(url, str) or "://" not in url:
        return False
    parts = urlsplit(url.strip())
    own = urlsplit(fakturownia_base_url).netloc if fakturownia_base_url else None
    host = parts.hostname or ""
    on_fakturownia = parts.netloc == own or host.endswith("." + DOMAINS[FAKTUROWNIA])
    segments = [s for s in parts.path.split("/") if s]
    return on_fakturownia and len(segments) >= 2 and segments[0] in ("invoices", "invoice")


def foreign_deal(deal: dict[str, Any], fakturownia_base_url: str | None) -> bool:
    """A deal that links to a Fakturownia invoice without this sync's `external_ids.fakturownia_invoice_id`:
    made by the CRM's built-in Fakturownia integration (reference/sugester-api.md, "the vendor's own
    integration"). This sync writes that external id on every deal it makes or links."""
    if FAKTUROWNIA_INVOICE_KEY in external_ids_of(deal):
        return False
    return links_to_fakturownia_invoice(deal.get("url"), fakturownia_base_url)


def vendor_integration_items(deals: dict[str, Any] | None) -> list[dict[str, Any]]:
    if deals is None:
        return [item(None, "CRM deals not read: the CRM account did not answer (see Accounts).")]
    if deals.get("error"):
        unknown = "unknown whether the CRM's own Fakturownia integration is on"
        return [item(None, f"CRM deals could not be read ({deals['error']}): {unknown}.")]
    foreign, scanned = deals["foreign"], deals["scanned"]
    if not deals["foreign_count"]:
        text = f"None of the {scanned} CRM deals links to a Fakturownia invoice without this sync's external id"
        return [item(True, f"{text}: the CRM's built-in Fakturownia integration looks off.")]
    text = (
        f"{deals['foreign_count']} of {scanned} CRM deals link to Fakturownia invoices this sync did not make (no "
        "external_ids.fakturownia_invoice_id): the CRM's built-in Fakturownia integration is still on and gives "
        "every invoice a second deal. Switch it off in the CRM's integration settings."
    )
    return [item(False, text, foreign)]


# Webhooks -------------------------------------------------------------------------------------------------


def _serving(registered: list[dict[str, Any]], kind: str, target_url: str | None) -> list[dict[str, Any]]:
    """The active webhooks of `kind` that deliver to `target_url` (to anywhere, while it is unknown)."""
    return [w for w in registered if w["kind"] == kind and w["active"] and target_url in (None, w["url"])]


def missing_webhook_kinds(registered: list[dict[str, Any]], target_url: str | None) -> list[str]:
    """The synced event kinds with no active webhook to `target_url`: what registering adds."""
    return [kind for kind in WEBHOOK_KINDS if not _serving(registered, kind, target_url)]


def webhook_items(webhooks: dict[str, Any] | None, target_url: str | None) -> list[dict[str, Any]]:
    """Per synced event kind: is an active webhook registered to `target_url`, carrying the token the
    receiver checks (connection `fakturownia_webhook`)? With no `target_url` nothing tells this sync's
    webhooks from another system's, so the kinds are only listed (never a problem)."""
    if webhooks is None:
        return [item(None, "Webhooks not read: the Fakturownia account did not answer (see Accounts).")]
    items = [item(False, problem) for problem in webhooks.get("problems", [])]
    if not webhooks["known"]:
        return [*items, item(None, f"Webhooks unknown: {webhooks['reason']}. Look in {WEBHOOK_SETTINGS}.")]
    registered, created = webhooks["registered"], webhooks.get("created", [])
    for kind in WEBHOOK_KINDS:
        active = _serving(registered, kind, None)
        going = f" (active ones go to {', '.join(sorted({w['url'] for w in active}))})" if active else ""
        matching = _serving(registered, kind, target_url)
        if target_url is None:
            text = f"{kind}: no active webhook to this receiver known{going}; set webhook_url to check and register"
            items.append(item(None, f"{text} them (the scheduled sweep picks changes up meanwhile).", active))
        elif not matching:
            text = f"{kind}: no active webhook to {target_url}{going}; run this DAG with register_webhooks on"
            items.append(item(False, f"{text}, or add it in {WEBHOOK_SETTINGS}.", active))
        elif not any(w.get("token_matches") is not False for w in matching):
            text = f"{kind}: the webhook's token is not the password of connection '{WEBHOOK_CONNECTION}'"
            items.append(item(False, f"{text}, so the receiver refuses its events.", matching))
        else:
            now = " by this run" if any(w in created for w in matching) else ""
            items.append(item(True, f"{kind}: registered{now} → {matching[0]['url']}.", matching))
    return items
