"""The assets the DAGs read and write: `fakturownia://<account>/invoices`, `.../clients`,
`sugester://<account>/deals`, `.../clients` (DESIGN.md "Assets and webhooks")."""

from __future__ import annotations

import os

from airflow.sdk import Asset

# The account names are read at DAG-parse time, where no connection may be looked up (no network or DB at
# the top level of a DAG file): they come from the environment, with a neutral default.
FAKTUROWNIA_ACCOUNT = os.environ.get("FAKTUROWNIA_SYNC_FAKTUROWNIA_ACCOUNT", "default")
CRM_ACCOUNT = os.environ.get("FAKTUROWNIA_SYNC_CRM_ACCOUNT", "default")

FAKTUROWNIA_INVOICES = Asset(f"fakturownia://{FAKTUROWNIA_ACCOUNT}/invoices")
FAKTUROWNIA_CLIENTS = Asset(f"fakturownia://{FAKTUROWNIA_ACCOUNT}/clients")
CRM_DEALS = Asset(f"sugester://{CRM_ACCOUNT}/deals")
CRM_CLIENTS = Asset(f"sugester://{CRM_ACCOUNT}/clients")
