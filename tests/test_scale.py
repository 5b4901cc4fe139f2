"""`make scale` in small: 1,000 invoices backfilled on CeleryExecutor with two workers, real processes.

The same topology and checks as `python -m scripts.scale` (PostgreSQL metadata and state DBs, the local Redis,
api-server, scheduler, dag-processor, triggerer, two Celery workers, the sandbox), without the one-worker
comparison. To stay short it backfills by quarter instead of by month (13 mapped windows instead of 38, so
fewer task start-ups), the sandbox answers after 20 ms instead of 150 ms and the scheduled DAGs run every
20 s; the checks are the same, against the same reference run of the engine alone. The
run's own databases and ports differ from `make scale`'s so the two never clobber each other's state.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from scripts.scale import checks_pass, run_phase
from scripts.topology import Ports, celery_ping, psql


def test_backfill_on_two_celery_workers_duplicates_nothing_loses_nothing_and_keeps_the_pools() -> None:
    ports = Ports(api=19850, first_worker_log=19851, triggerer_log=19859, fakturownia=19860, sugester=19861)
    # A directory of its own rather than pytest's tmp_path: another pytest session on the machine may prune
    # pytest's old base directories while these minutes-long processes still write there.
    workdir = Path(tempfile.mkdtemp(prefix="fakturownia-scale-test-"))
    try:
        result = run_phase(
            workdir,
            2,
            window="quarter",
            sync_every=20,
            name="fakturownia_scale_test",
            invoices=1_000,
            latency_ms=20,
            ports=ports,
            log=lambda _line: None,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    assert result["backfill_state"] == "success"
    assert result["invoices"] == 1_000 and result["invoices_issued_meanwhile"] > 0
    # the deals are the ones the engine makes alone, window after window (the reference run): none missing,
    # none twice, none different, none extra, the same invoices quarantined
    assert result["reference_deals"] > 0
    assert result["duplicate_deals"] == 0 and result["missing_deals"] == 0
    assert result["different_deals"] == 0 and result["extra_deals"] == 0
    assert result["quarantine_as_reference"], (result["quarantined"], result["reference_quarantined"])
    assert result["issued_with_a_deal"] > 0
    assert result["deals_on_missing_clients"] == 0
    assert result["duplicate_clients"] == 0 and result["missing_clients"] == 0
    # the pools the DAGs use were held, and never beyond their slots
    assert set(result["pool_slots"]) >= {"sugester_api", "fakturownia_api"}
    assert result["pool_peak"]["sugester_api"] >= 2
    assert result["pools_within_limits"]
    # both workers ran backfill windows, and the scheduled syncs ran while the backfill did
    assert len(result["workers_used"]) == 2, result["backfill_tasks_by_worker"]
    assert all(count >= 1 for count in result["sync_runs_during_backfill"].values())
    assert checks_pass(result)

    # nothing the run started is left: no worker answers, the sandbox's port is free
    assert not celery_ping("redis://127.0.0.1:6379/5")
    assert psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'fakturownia_scale_test_airflow'") == [(0,)]
