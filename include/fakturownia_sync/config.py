"""The sync configuration: the Airflow Variable `fakturownia_sync_config` (one JSON object), validated.

Missing keys take the defaults below (an absent Variable means all defaults). An unknown key or a value of
the wrong type fails the run at its first task with a message that names the key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fakturownia_sync.errors import ConfigError

VARIABLE_NAME = "fakturownia_sync_config"

INVOICE_KINDS = (
    "vat", "proforma", "bill", "receipt", "advance", "final", "correction", "invoice_other", "vat_margin",
    "kp", "kw", "estimate", "vat_mp", "vat_rr", "correction_note", "accounting_note", "client_order", "dw",
    "wnt", "wdt", "import_service", "import_service_eu", "import_products", "export_products",
)  # fmt: skip
DEFAULT_INVOICE_KINDS = ["vat", "vat_margin", "advance", "final", "receipt"]


# Bounds (issue 8): every number is bounded, so a typo fails at the first task with the key's name instead of
# an OverflowError or a run that retries for a century.
MAX_LOOKBACK_MINUTES = 30 * 24 * 60  # 30 days: the sweep re-reads at most a month before its cursor
MAX_RETRY_MINUTES = 30 * 24 * 60  # quarantined records are retried at least every 30 days
MAX_REQUESTS_PER_MINUTE = 100_000  # far above what either vendor allows; 0 means "no client-side limit"
MAX_CRM_WRITE_CONCURRENCY = 32
MAX_ID = 2**63 - 1  # ids are BIGINT in the state DB and in both APIs
MAX_PAYMENT_DAYS = 365  # deal_invoicing.payment_days: a year is the longest term anyone sets
MAX_ALERT_GROWTH = 1_000_000  # alerts.*_growth: more new entries than any run could add
MAX_ALERT_RECIPIENTS = 50
MAX_URL_LENGTH = 2000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


RecordId = Annotated[int, Field(ge=1, le=MAX_ID)]


class DepartmentPair(_Strict):
    fakturownia_department_id: RecordId
    crm_department_id: RecordId


class NoDepartment(_Strict):
    """What a record with no department on one side gets on the other (None: no department).

    Applies only while `department_map` has pairs; see `departments.py` for the whole rule."""

    crm_department_id: RecordId | None = None
    fakturownia_department_id: RecordId | None = None


class ApiBudgets(_Strict):
    """Requests per minute each worker process may send to each API (0: no client-side limit)."""

    fakturownia: int = Field(default=0, ge=0, le=MAX_REQUESTS_PER_MINUTE)
    sugester: int = Field(default=0, ge=0, le=MAX_REQUESTS_PER_MINUTE)


class AnonymousBuyers(_Strict):
    """What a document's buyer with no client card, no NIP and no e-mail (receipts, walk-in customers) becomes.

    `per_buyer` (default): one CRM client per distinct normalised name and address; `catch_all`: the one CRM
    client `crm_client_id`; `quarantine`: the document is held for a person."""

    policy: Literal["per_buyer", "catch_all", "quarantine"] = "per_buyer"
    crm_client_id: RecordId | None = None

    @model_validator(mode="after")
    def _catch_all_names_its_client(self) -> AnonymousBuyers:
        if self.policy == "catch_all" and self.crm_client_id is None:
            raise ValueError("policy 'catch_all' needs 'crm_client_id', the CRM client that takes these documents")
        if self.policy != "catch_all" and self.crm_client_id is not None:
            raise ValueError(f"'crm_client_id' is used only by policy 'catch_all', not by {self.policy!r}")
        return self


StatusRef = Annotated[str, Field(min_length=1, max_length=255)] | RecordId


class DealInvoicing(_Strict):
    """`crm_deals_to_invoices`: which CRM deals become Fakturownia invoices, and what the invoice says.

    `statuses` and `invoiced_status` take CRM deal status names or ids (resolved through the CRM's deal
    statuses at the start of each run). Off by default: nothing is invoiced until a person turns it on."""

    enabled: bool = False
    statuses: list[StatusRef] = Field(default_factory=lambda: ["Wygrany"], min_length=1, max_length=50)
    invoice_kind: Literal["vat", "proforma"] = "vat"
    price: Literal["gross", "net"] = "gross"
    tax: str = "23"
    payment_days: int = Field(default=14, ge=0, le=MAX_PAYMENT_DAYS)
    invoiced_status: StatusRef | None = None

    @field_validator("tax")
    @classmethod
    def _tax_rate(cls, tax: str) -> str:
        if tax in ("zw", "np") or (tax.isdigit() and 0 <= int(tax) <= 100):
            return tax
        raise ValueError(f"tax must be a VAT rate in percent (e.g. '23', '8', '0') or 'zw' / 'np', got {tax!r}")


class FakturowniaUser(_Strict):
    """One Fakturownia user (Fakturownia documents no user API, so they are listed in the config)."""

    id: RecordId
    login: str = Field(min_length=1, max_length=255)
    email: str = Field(min_length=3, max_length=255)


AccountName = Annotated[str, Field(min_length=1, max_length=255)]


class ExpectedAccounts(_Strict):
    """The account each connection must name (`fakturownia_integration_check`); None: any account.

    A guard against a deployment that talks to the wrong account (a test account, the sandbox, a colleague's
    prefix): the names are those the run logs, the account prefix (`acme`) or, for a base URL, host:port."""

    fakturownia: AccountName | None = None
    sugester: AccountName | None = None


class Alerts(_Strict):
    """Who is told when a run fails or the lists a person must work through grow (the Airflow notifier).

    `email_to` empty: no e-mail at all. `quarantine_growth` / `review_growth`: alert when a run ends with at
    least this many more open quarantine entries (its stream's) / client review entries than the run before
    it; None: growth never alerts. `on_failure`: alert when a task of any of the DAGs fails for good."""

    email_to: list[str] = Field(default_factory=list, max_length=MAX_ALERT_RECIPIENTS)
    on_failure: bool = True
    quarantine_growth: int | None = Field(default=None, ge=1, le=MAX_ALERT_GROWTH)
    review_growth: int | None = Field(default=None, ge=1, le=MAX_ALERT_GROWTH)

    @field_validator("email_to")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> list[str]:
        bad = [a for a in addresses if not _EMAIL.fullmatch(a.strip())]
        if bad:
            raise ValueError(f"not an e-mail address: {bad[:3]} (one address per list item)")
        return [a.strip() for a in addresses]


_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")


# The keys that decide how a record comes out (which invoices get deals, and what a deal shows): the
# fingerprint covers exactly these, so a change of any of them retries quarantined records. Every other key
# is in NON_DECISIVE_KEYS (throughput, sweep timing, client merge policy); a test keeps the two complete.
DECISIVE_KEYS = frozenset(
    {
        "invoice_kinds", "department_map", "no_department", "deal_amount", "anonymous_buyers",
        "deal_invoicing", "fakturownia_users",
    }
)  # fmt: skip
NON_DECISIVE_KEYS = frozenset(
    {
        "conflict_policy", "lookback_minutes", "quarantine_retry_minutes", "requests_per_minute",
        "crm_write_concurrency", "expected_accounts", "webhook_url", "alerts",
    }
)  # fmt: skip


def valid_webhook_url(url: str) -> str:
    """Where Fakturownia's webhooks go (config key `webhook_url`, or the integration check's Param): the
    plugin's receiver, `<Airflow URL>/fakturownia-sync/webhooks/fakturownia`, as Fakturownia's servers reach
    it. An http(s) URL with a host and no user or password (it is stored in Fakturownia in the clear)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
        raise ValueError(f"must be an http(s) URL with a host and no user or password, got {url[:80]!r}")
    return url.strip()


class SyncConfig(_Strict):
    invoice_kinds: list[str] = Field(default_factory=lambda: list(DEFAULT_INVOICE_KINDS))
    department_map: list[DepartmentPair] = Field(default_factory=list)
    no_department: NoDepartment = Field(default_factory=NoDepartment)
    deal_amount: Literal["gross", "net"] = "gross"
    conflict_policy: Literal["newest_wins", "fakturownia_wins", "crm_wins"] = "newest_wins"
    lookback_minutes: int = Field(default=60, ge=0, le=MAX_LOOKBACK_MINUTES)
    quarantine_retry_minutes: int = Field(default=60, ge=0, le=MAX_RETRY_MINUTES)
    requests_per_minute: ApiBudgets = Field(default_factory=ApiBudgets)
    crm_write_concurrency: int = Field(default=4, ge=1, le=MAX_CRM_WRITE_CONCURRENCY)
    anonymous_buyers: AnonymousBuyers = Field(default_factory=AnonymousBuyers)
    deal_invoicing: DealInvoicing = Field(default_factory=DealInvoicing)
    fakturownia_users: list[FakturowniaUser] = Field(default_factory=list, max_length=10_000)
    expected_accounts: ExpectedAccounts = Field(default_factory=ExpectedAccounts)
    webhook_url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    alerts: Alerts = Field(default_factory=Alerts)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, url: str | None) -> str | None:
        return None if url is None else valid_webhook_url(url)

    @field_validator("invoice_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = [kind for kind in kinds if kind not in INVOICE_KINDS]
        if unknown:
            raise ValueError(f"unknown invoice kind(s) {unknown}; known kinds: {', '.join(INVOICE_KINDS)}")
        return kinds

    @field_validator("department_map")
    @classmethod
    def _one_to_one(cls, pairs: list[DepartmentPair]) -> list[DepartmentPair]:
        for side in ("fakturownia_department_id", "crm_department_id"):
            ids = [getattr(pair, side) for pair in pairs]
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                raise ValueError(f"{side} {repeated} is mapped more than once; the map must be one-to-one")
        return pairs

    @field_validator("fakturownia_users")
    @classmethod
    def _unique_users(cls, users: list[FakturowniaUser]) -> list[FakturowniaUser]:
        ids = [user.id for user in users]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"user id {repeated} is listed more than once")
        return users

    def fingerprint(self) -> str:
        """A short hash of the settings that decide a record's outcome (`DECISIVE_KEYS`, not throughput knobs);
        quarantine entries remember it, so a config change that could fix them retries them. The order of
        `invoice_kinds` and of `department_map` does not change it."""
        decisive = self.model_dump(include=set(DECISIVE_KEYS))
        decisive["invoice_kinds"] = sorted(set(decisive["invoice_kinds"]))
        decisive["department_map"] = sorted(
            (pair["fakturownia_department_id"], pair["crm_department_id"]) for pair in decisive["department_map"]
        )
        return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    bounds = error.get("ctx") or {}
    if error["type"] == "less_than_equal":
        message = f"must be at most {bounds['le']}{_UNITS.get(key, '')}"
    elif error["type"] == "greater_than_equal":
        message = f"must be at least {bounds['ge']}{_UNITS.get(key, '')}"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return f"key '{key}': {message} (got {json.dumps(error.get('input'), default=str)[:80]})"


_UNITS = {
    "lookback_minutes": " minutes (30 days)",
    "quarantine_retry_minutes": " minutes (30 days)",
    "requests_per_minute.fakturownia": " requests a minute (0: no client-side limit)",
    "requests_per_minute.sugester": " requests a minute (0: no client-side limit)",
    "alerts.quarantine_growth": " new open entries since the previous run (null: never alert)",
    "alerts.review_growth": " new open entries since the previous run (null: never alert)",
}


def load_config(raw: str | dict[str, Any] | None) -> SyncConfig:
    """Parse the Variable's value (JSON text, an already-decoded dict, or None for all defaults)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return SyncConfig()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Variable '{VARIABLE_NAME}' is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Variable '{VARIABLE_NAME}' must be a JSON object, got {type(raw).__name__}")
    try:
        return SyncConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise ConfigError(f"Variable '{VARIABLE_NAME}' is invalid: {problems}") from None
