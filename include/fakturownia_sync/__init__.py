"""The sync engine: API clients, record models, matching, state store and config.

Nothing in this package imports Airflow, so every part of it can be tested and run without a scheduler.
"""
