"""The sync configuration that fits the sandbox's seeded data: the demo's `fakturownia_sync_config` Variable.

Its department map is the sandbox's own pairing of Fakturownia and CRM departments, so the demo, the
benchmarks, the soak and the tests all sync into the departments the seed created. It lives here, next to
the seed it describes, because scripts and tests both read it and neither may import the other.
"""

from __future__ import annotations

from typing import Any

from sandbox.seed import CRM_DEPARTMENT_OF, INVOICED_STATUS, INVOICING_STATUS

DEMO_CONFIG: dict[str, Any] = {
    "invoice_kinds": ["vat", "vat_margin", "advance", "final", "receipt"],
    "department_map": [
        {"fakturownia_department_id": fakturownia_id, "crm_department_id": crm_id}
        for fakturownia_id, crm_id in sorted(CRM_DEPARTMENT_OF.items())
    ],
    "no_department": {"crm_department_id": None, "fakturownia_department_id": None},
    "deal_amount": "gross",
    "conflict_policy": "newest_wins",
    "lookback_minutes": 60,
    # `crm_deals_to_invoices` (off by default in the product): the seed's won deals become invoices and move on.
    "deal_invoicing": {"enabled": True, "statuses": [INVOICING_STATUS], "invoiced_status": INVOICED_STATUS},
}
