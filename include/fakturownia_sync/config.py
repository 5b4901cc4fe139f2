"""The sync configuration: the Airflow Variable `fakturownia_sync_config` (one JSON object), validated.

Missing keys take the defaults below (an absent Variable means all defaults). An unknown key or a value of
the wrong type fails the run at its first task with a message that names the key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fakturownia_sync.errors import ConfigError

VARIABLE_NAME = "fakturownia_sync_config"

INVOICE_KINDS = (
    "vat", "proforma", "bill", "receipt", "advance", "final", "correction", "invoice_other", "vat_margin",
    "kp", "kw", "estimate", "vat_mp", "vat_rr", "correction_note", "accounting_note", "client_order", "dw",
    "wnt", "wdt", "import_service", "import_service_eu", "import_products", "export_products",
)  # fmt: skip
DEFAULT_INVOICE_KINDS = ["vat", "vat_margin", "advance", "final", "receipt"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DepartmentPair(_Strict):
    fakturownia_department_id: int
    crm_department_id: int


class NoDepartment(_Strict):
    """What a record with no department on one side gets on the other (None: no department)."""

    crm_department_id: int | None = None
    fakturownia_department_id: int | None = None


class ApiBudgets(_Strict):
    """Requests per minute each worker process may send to each API (0: no client-side limit)."""

    fakturownia: int = Field(default=0, ge=0)
    sugester: int = Field(default=0, ge=0)


class SyncConfig(_Strict):
    invoice_kinds: list[str] = Field(default_factory=lambda: list(DEFAULT_INVOICE_KINDS))
    department_map: list[DepartmentPair] = Field(default_factory=list)
    no_department: NoDepartment = Field(default_factory=NoDepartment)
    deal_amount: Literal["gross", "net"] = "gross"
    conflict_policy: Literal["newest_wins", "fakturownia_wins", "crm_wins"] = "newest_wins"
    lookback_minutes: int = Field(default=60, ge=0)
    quarantine_retry_minutes: int = Field(default=60, ge=0)
    requests_per_minute: ApiBudgets = Field(default_factory=ApiBudgets)
    crm_write_concurrency: int = Field(default=4, ge=1, le=32)

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

    def crm_department_for(self, fakturownia_department_id: int | None) -> tuple[bool, int | None]:
        """(mapped?, CRM department id) for a Fakturownia department.

        An empty map means departments are not synced: everything maps to "no department". A record with no
        department takes `no_department.crm_department_id`.
        """
        if fakturownia_department_id is None:
            return True, self.no_department.crm_department_id
        if not self.department_map:
            return True, None
        for pair in self.department_map:
            if pair.fakturownia_department_id == fakturownia_department_id:
                return True, pair.crm_department_id
        return False, None

    def fingerprint(self) -> str:
        """A short hash of the settings that decide a record's outcome (not of throughput knobs);
        quarantine entries remember it, so a config change that could fix them retries them."""
        decisive = self.model_dump(include={"invoice_kinds", "department_map", "no_department", "deal_amount"})
        return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    return f"key '{key}': {error['msg']} (got {json.dumps(error.get('input'), default=str)[:80]})"


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
