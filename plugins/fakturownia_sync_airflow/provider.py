"""Provider metadata: what makes `fakturownia` and `sugester` connection types, their forms and their "Test"
button appear in Airflow, and what lets Airflow check the project's asset URIs.

Airflow calls `get_provider_info()` (the `apache_airflow_provider` entry point in pyproject.toml) in every
component that discovers providers: the api-server, the scheduler, the dag-processor, the CLI. So this module
imports nothing beyond the standard library; hooks are named by dotted path and imported only when used.

The connection forms are declared here, not computed by the hooks: Airflow 3.3 reads `ui-field-behaviour`
from provider info without importing a hook (a hook's own `get_ui_field_behaviour()` is deprecated there and
only asked when provider info says nothing). The hooks' `get_ui_field_behaviour()` returns the same dict,
built by `field_behaviour()` below, for tools that still ask the hook.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult

PACKAGE_NAME = "fakturownia-crm-sync"  # the distribution name in pyproject.toml; Airflow insists they match
VERSION = "0.1.0"

FAKTUROWNIA_CONN_TYPE = "fakturownia"
SUGESTER_CONN_TYPE = "sugester"

# Airflow config section of the project (also `review_export_folder`, read by the task bodies).
CONFIG_SECTION = "fakturownia_sync"
# The account names in the asset URIs when the config names none (see `assets.py`).
DEFAULT_ASSET_ACCOUNT = "default"

# What each API's asset URIs may name after the account: `fakturownia://acme/invoices`, `sugester://acme/deals`.
ASSET_RESOURCES = {
    FAKTUROWNIA_CONN_TYPE: ("invoices", "clients"),
    SUGESTER_CONN_TYPE: ("deals", "clients"),
}

# The connection fields the API hooks read: `host` (account prefix or base URL) and `password` (API token).
# A base URL carries scheme and port, so the form hides the fields that only the bare-host form could use;
# connections that set them (an `http` connection from `AIRFLOW_CONN_*`) keep working. (Airflow 3's form
# shows the Extra JSON whatever this says; hiding it matters to forms that honour it.)
_HIDDEN_FIELDS = ["login", "schema", "port", "extra"]
_RELABELING = {"host": "Account or base URL", "password": "API token"}
_PLACEHOLDERS = {
    FAKTUROWNIA_CONN_TYPE: {
        "host": "acme (for https://acme.fakturownia.pl) or a base URL such as http://127.0.0.1:18081",
        "password": "API token, as given (TOKEN or TOKEN/acme)",
    },
    SUGESTER_CONN_TYPE: {
        "host": "acme (for https://acme.sugester.pl) or a base URL such as http://127.0.0.1:18082",
        "password": "API token, as given (TOKEN or TOKEN/acme)",
    },
}


def field_behaviour(conn_type: str) -> dict[str, Any]:
    """The connection form of `conn_type`, in the hook style (`hidden_fields`, `relabeling`, `placeholders`)."""
    return {
        "hidden_fields": list(_HIDDEN_FIELDS),
        "relabeling": dict(_RELABELING),
        "placeholders": dict(_PLACEHOLDERS[conn_type]),
    }


def _provider_field_behaviour(conn_type: str) -> dict[str, Any]:
    """The same form in provider-info spelling (kebab-case keys)."""
    behaviour = field_behaviour(conn_type)
    return {
        "hidden-fields": behaviour["hidden_fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def _normalize_asset_uri(parts: SplitResult) -> SplitResult:
    """Airflow's URI handler for both schemes: one spelling per asset, and no asset that names nothing.

    Airflow has already lower-cased the scheme, dropped a fragment and trailing slashes; here the account is
    lower-cased too (host names are case-insensitive, so `Acme` and `acme` are one account), and a URI that
    names no account, or a resource the API does not have, is refused when the DAG file is parsed.
    """
    resources = ASSET_RESOURCES[parts.scheme]
    account = parts.netloc.lower()
    resource = parts.path.strip("/")
    if not account or "@" in account:
        raise ValueError(f"{parts.scheme}:// asset URI must name the account: {parts.scheme}://<account>/<resource>")
    if resource not in resources or parts.query:
        raise ValueError(
            f"{parts.scheme}:// asset URI names '{parts.path}{'?' + parts.query if parts.query else ''}'; "
            f"expected one of: {', '.join('/' + name for name in resources)}"
        )
    return parts._replace(netloc=account, path=f"/{resource}")


def normalize_fakturownia_uri(parts: SplitResult) -> SplitResult:
    """`fakturownia://<account>/invoices|clients`."""
    return _normalize_asset_uri(parts)


def normalize_sugester_uri(parts: SplitResult) -> SplitResult:
    """`sugester://<account>/deals|clients`."""
    return _normalize_asset_uri(parts)


def _config_option(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": VERSION,
        "type": "string",
        "example": "acme",
        "default": DEFAULT_ASSET_ACCOUNT,
    }


def get_provider_info() -> dict[str, Any]:
    """Provider info as Airflow's `provider_info.schema.json` describes it (checked on Airflow 3.3.2)."""
    module = "fakturownia_sync_airflow"
    return {
        "package-name": PACKAGE_NAME,
        "name": "Fakturownia CRM sync",
        "description": "Keeps Fakturownia.pl (invoicing) and the Sugester CRM in sync: clients both ways, "
        "every invoice a deal, deals marked for invoicing become invoices.",
        "versions": [VERSION],
        "integrations": [
            {
                "integration-name": "Fakturownia.pl",
                "external-doc-url": "https://app.fakturownia.pl/api",
                "tags": ["service"],
            },
            {
                "integration-name": "Sugester CRM",
                "external-doc-url": "https://api.sugester.pl/app/account/api",
                "tags": ["service"],
            },
        ],
        "hooks": [
            {"integration-name": "Fakturownia.pl", "python-modules": [f"{module}.hooks"]},
            {"integration-name": "Sugester CRM", "python-modules": [f"{module}.hooks"]},
        ],
        "connection-types": [
            {
                "connection-type": FAKTUROWNIA_CONN_TYPE,
                "hook-class-name": f"{module}.hooks.FakturowniaHook",
                "hook-name": "Fakturownia.pl",
                "ui-field-behaviour": _provider_field_behaviour(FAKTUROWNIA_CONN_TYPE),
            },
            {
                "connection-type": SUGESTER_CONN_TYPE,
                "hook-class-name": f"{module}.hooks.SugesterHook",
                "hook-name": "Sugester CRM",
                "ui-field-behaviour": _provider_field_behaviour(SUGESTER_CONN_TYPE),
            },
        ],
        "asset-uris": [
            {"schemes": [FAKTUROWNIA_CONN_TYPE], "handler": f"{module}.provider.normalize_fakturownia_uri"},
            {"schemes": [SUGESTER_CONN_TYPE], "handler": f"{module}.provider.normalize_sugester_uri"},
        ],
        "config": {
            CONFIG_SECTION: {
                "description": "Fakturownia CRM sync: the accounts its assets name.",
                "options": {
                    "fakturownia_account": _config_option(
                        "The Fakturownia account named in the asset URIs fakturownia://<account>/invoices and "
                        "/clients. Read when DAG files are parsed, so every Airflow component must see the "
                        "same value."
                    ),
                    "crm_account": _config_option(
                        "The Sugester CRM account named in the asset URIs sugester://<account>/deals and "
                        "/clients. Read when DAG files are parsed, so every Airflow component must see the "
                        "same value."
                    ),
                },
            }
        },
    }
