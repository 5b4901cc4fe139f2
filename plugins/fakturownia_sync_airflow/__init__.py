"""Airflow-facing adapters of the sync engine: hooks (connection → API client) and task bodies.

The engine in `include/` knows nothing of Airflow; this package reads connections, Variables and Params,
registers secrets for masking, and turns engine errors into one clear task failure.
"""
