"""How long anything may take: one request, one attempt, one task, and when a claim may be taken over.

These numbers hang together, so they live in one place.

A run that is about to create a record (a CRM deal or client) first *claims* it in the state DB, then sends the
create, then records the new id. If the worker dies in between, the claim is left behind; another run may take
it over once it is `STALE_CLAIM_MINUTES` old, look the record up and create it only if it is not there.

That look-up is only sound if the create of the dead (or merely slow) run can no longer land. A request that is
still in flight when the claim is taken over may reach the server *after* the new owner looked and found
nothing, and both creates then succeed: a duplicate. So every request carries a hard deadline that covers
connecting, sending and reading the whole answer, over all of its attempts (`REQUEST_DEADLINE_SECONDS`), and
that deadline is well inside the take-over window. A claim older than the window therefore belongs to a request
that has either landed (and the look-up finds its record) or has been abandoned by its own process.

A per-read socket timeout is not such a deadline: it restarts on every byte, so an answer that trickles a byte
every few seconds would hold a request open for ever. The transport enforces the deadline with a watchdog that
cuts the connection (see `http_deadline`). Airflow's `execution_timeout` (`TASK_EXECUTION_TIMEOUT`) is the outer
fence for everything else a task might do.
"""

from __future__ import annotations

from datetime import timedelta

STALE_CLAIM_MINUTES = 15
"""A claim older than this may be taken over by another run (the one definition of the take-over window)."""

ATTEMPT_DEADLINE_SECONDS = 60.0
"""One attempt of one request: connect, send and read the whole answer, or give the attempt up."""

REQUEST_DEADLINE_SECONDS = 300.0
"""One request over all of its attempts and the waits between them (rate-limit pauses included)."""

TASK_EXECUTION_TIMEOUT = timedelta(hours=2)
"""Airflow `execution_timeout` of the sync tasks: a task that runs longer is stopped and retried by Airflow."""

SETUP_CHECK_TIMEOUT = timedelta(minutes=10)
"""Airflow `execution_timeout` of `check_setup`: a few bounded requests and a migration."""

BACKFILL_TASK_TIMEOUT = timedelta(hours=6)
"""Airflow `execution_timeout` of one backfill window or the backfill's full client sync."""

if REQUEST_DEADLINE_SECONDS >= STALE_CLAIM_MINUTES * 60 / 2:
    raise AssertionError("a request must be over long before the claim it holds may be taken over")
if ATTEMPT_DEADLINE_SECONDS > REQUEST_DEADLINE_SECONDS:
    raise AssertionError("one attempt cannot outlast the request it belongs to")
