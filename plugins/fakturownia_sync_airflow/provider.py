"""Provider metadata: what makes `fakturownia` and `sugester` connection types appear in the Airflow UI."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "fakturownia-crm-sync",
        "name": "Fakturownia CRM sync",
        "description": "Keeps Fakturownia.pl and a CRM (Sugester) in sync.",
        "versions": ["0.1.0"],
    }
