"""The Airflow plugin: the integration's page under Browse and the webhook receiver (one FastAPI app).

Registered by the `airflow.plugins` entry point of the installed project. The plugins folder holds the
same package, and Airflow would also import every `.py` file of that folder as a plugin module of its own
(and report the second registration as an import error): `plugins/.airflowignore` keeps the folder scan
out of the package, so the plugin is loaded once, from the entry point.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from fakturownia_sync_airflow.ui.app import URL_PREFIX, create_app

PAGE_NAME = "Fakturownia ↔ CRM sync"


class FakturowniaSyncPlugin(AirflowPlugin):
    name = "fakturownia_sync"
    # AirflowPlugin's extension points are class-level lists by design
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": PAGE_NAME}]  # noqa: RUF012
    # Under Browse; with `url_route` the UI shows the page in its own frame at /plugin/fakturownia-sync.
    # `href` is relative (no leading slash) so it follows the api-server's base URL.
    external_views = [  # noqa: RUF012
        {
            "name": PAGE_NAME,
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": "fakturownia-sync",
            "category": "browse",
            "destination": "nav",
        }
    ]
