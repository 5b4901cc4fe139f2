"""The integration's page inside the Airflow UI: a small FastAPI app the plugin mounts at `/fakturownia-sync`.

Server-rendered HTML (Jinja2, autoescaped) with plain CSS and plain forms, so it needs no front-end build and
works in the UI's iframe. Everything it shows comes from the state DB (through `StateStore`'s read views),
the config Variable, and, for departments and users only, a few list calls to the two APIs.
"""
