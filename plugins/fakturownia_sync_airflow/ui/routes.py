"""The page and its actions. Every route here is behind the Airflow login (`PAGE_ACCESS` on the router);
actions also need the right to trigger the DAG whose next run carries them out.

Actions are plain form posts answered with a redirect back to the page (post/redirect/get), so a reload
never repeats one. Links and redirects are relative, so the page works under any prefix or proxy path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.sdk.exceptions import AirflowFailException
from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader
from starlette.background import BackgroundTask

from fakturownia_sync.accounts import ApiAccount
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.review import REVIEW_FILE, write_review_csv
from fakturownia_sync.state import StateStore
from fakturownia_sync.state.review_decisions import PAIR_DECISIONS, REVIEW_DECISIONS
from fakturownia_sync.transport import RetryPolicy
from fakturownia_sync_airflow.hooks import FakturowniaHook, SugesterHook, SyncStateHook
from fakturownia_sync_airflow.tasks import load_sync_config
from fakturownia_sync_airflow.ui import api_sections, sections
from fakturownia_sync_airflow.ui.auth import PAGE_ACCESS, acting_user, require_run_access, user_name

TEMPLATES = Path(__file__).with_name("templates")
environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True)

# A page must answer in seconds, not ride out minutes of API trouble like a sync run does.
PAGE_API_POLICY = RetryPolicy(
    max_attempts=2, backoff_initial=0.5, backoff_max=1.0, max_total_seconds=15.0, read_timeout=10.0
)

DECISION_LABELS = {
    "link": "link these two",
    "different": "they are different: create on the other side",
    "ignore": "ignore",
}
NOTICES = {
    "retry": "The record will be tried again in the next run.",
    "retry_gone": "That quarantine entry is no longer open; nothing was changed.",
    "decided": "Decision stored; the next client sync applies it.",
    "review_gone": "That review entry is no longer open (a client sync resolved it); nothing was stored.",
    "review_decided_meanwhile": (
        "Someone else decided on that review entry after the page showed it; nothing was stored. Their decision is "
        "shown below: decide again to replace it."
    ),
    "review_changed": (
        "That review entry changed after the page showed it (a client sync found other records or another reason); "
        "nothing was stored. Look at it again below and decide on what it shows now."
    ),
}
# Form values are ids, names of streams and subjects: anything longer is not one (and is refused before any query).
MAX_FORM_VALUE = 200

# The page is plain HTML, forms and inline CSS: no script, image or font of any origin, forms posting only to itself,
# and framed only by the Airflow UI of its own origin. Should a value ever reach the page unescaped, the browser
# still runs nothing and sends nothing elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(dependencies=[PAGE_ACCESS])


@contextmanager
def state_store() -> Iterator[StateStore]:
    """The state DB for an action or the CSV; one that cannot be opened is a 503 that says so (the cause goes
    to the api-server log, never to the page: a connection error may name the DB's host and user)."""
    try:
        store = SyncStateHook().get_conn()
    except Exception as exc:
        sections.failure("the state DB", exc)  # logs it
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The state DB could not be opened: nothing was read or stored. The integration page says why.",
        ) from exc
    try:
        yield store
    finally:
        store.close()


def _account(hook: FakturowniaHook | SugesterHook) -> ApiAccount | None:
    try:
        return hook.account()
    except Exception:  # a missing or incomplete connection: the page shows no links, the section says why
        return None


def _config() -> tuple[Any, str | None]:
    """The config Variable as the DAGs read it, or why it cannot be used."""
    try:
        return load_sync_config(), None
    except (AirflowFailException, ConfigError) as exc:
        return None, str(exc)


def _client(hook: FakturowniaHook | SugesterHook) -> tuple[Any, str | None]:
    try:
        return hook.get_conn(policy=PAGE_API_POLICY), None
    except ConfigError as exc:
        return None, str(exc)
    except Exception as exc:  # e.g. the connection is not defined at all
        return None, f"connection '{hook.conn_id}' could not be used ({type(exc).__name__})"


@router.get("/", response_class=HTMLResponse, name="integration_page")
def page(user: GetUserDep, done: str | None = None) -> HTMLResponse:
    config, config_problem = _config()
    fakturownia, f_problem = _client(FakturowniaHook())
    crm, c_problem = _client(SugesterHook())
    crm_for_users = _client(SugesterHook())[0] if crm is not None and config is not None else None
    f_account, c_account = _account(FakturowniaHook()), _account(SugesterHook())
    context: dict[str, Any] = {
        "user": user_name(user),
        "notice": NOTICES.get(done or ""),
        "decision_labels": DECISION_LABELS,
        "comparable": sections.COMPARABLE_FIELDS,
        "connection_problems": [p for p in (config_problem, f_problem, c_problem) if p],
    }
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="integration-page") as pool:
        reads = api_sections.ApiReads.start(pool, fakturownia, crm, crm_for_users)
        context.update(_state_sections(reads, config, f_account, c_account))
    return HTMLResponse(environment.get_template("page.html").render(**context), headers=PAGE_HEADERS)


def _state_sections(
    reads: api_sections.ApiReads, config: Any, f_account: ApiAccount | None, c_account: ApiAccount | None
) -> dict[str, Any]:
    """Every section, built while the API reads run; a state DB that cannot be opened is each section's problem
    (but departments and users, which the APIs give, are still shown)."""
    context: dict[str, Any] = {}
    try:
        store = SyncStateHook().get_conn()
    except Exception as exc:
        problem = sections.failure("the state DB", exc)
        for name in ("runs", "quarantine", "review", "check"):
            context[name] = problem
        context.update(_api_sections(reads, config, {}))
        context["departments"].notes.append(problem.problem)
        return context
    # which state DB the page reads (without its password): a missing connection means the default SQLite file,
    # which on an api-server apart from the workers is not theirs, and an empty page must not look like a new one
    context["state_db"] = store.safe_url
    try:
        usage = sections.guarded("department use", store.department_usage)
        context.update(
            runs=sections.guarded("runs", lambda: sections.runs_section(store)),
            quarantine=sections.guarded(
                "the quarantine", lambda: sections.quarantine_section(store, f_account, c_account)
            ),
            review=sections.guarded("the review list", lambda: sections.review_section(store, f_account, c_account)),
            check=sections.guarded("the integration check", lambda: sections.check_section(store)),
        )
    finally:
        store.close()
    context.update(_api_sections(reads, config, usage.data or {}))
    if usage.problem:
        context["departments"].notes.append(usage.problem)
    return context


def _api_sections(reads: api_sections.ApiReads, config: Any, usage: dict[str, Any]) -> dict[str, sections.Section]:
    team = reads.crm_users
    return {
        "departments": sections.guarded("departments", lambda: api_sections.departments_section(config, reads, usage)),
        "users": (
            sections.guarded("users", lambda: api_sections.users_section(config, team))
            if config is not None and team is not None
            else sections.Section(problem="users: needs a valid config Variable and the CRM connection")
        ),
    }


def _back(done: str, anchor: str) -> RedirectResponse:
    return RedirectResponse(f"./?{urlencode({'done': done})}#{anchor}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/quarantine-retry")
def retry_quarantined(
    request: Request,
    user: Annotated[BaseUser, Depends(acting_user)],
    stream: Annotated[str, Form(max_length=MAX_FORM_VALUE)],
    record_id: Annotated[str, Form(max_length=MAX_FORM_VALUE)],
) -> RedirectResponse:
    dag_id = sections.STREAM_DAGS.get(stream)
    if dag_id is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Unknown stream")
    require_run_access(request, user, dag_id)
    with state_store() as store:
        retried = store.request_quarantine_retry(stream, record_id, requested_by=user_name(user))
    return _back("retry" if retried else "retry_gone", "quarantine")


@router.post("/review-decision")
def decide_review(
    request: Request,
    user: Annotated[BaseUser, Depends(acting_user)],
    subject: Annotated[str, Form(max_length=MAX_FORM_VALUE)],
    decision: Annotated[str, Form(max_length=MAX_FORM_VALUE)],
    evidence: Annotated[str, Form(max_length=MAX_FORM_VALUE)],
    fakturownia_client_id: Annotated[int | None, Form()] = None,
    crm_client_id: Annotated[int | None, Form()] = None,
    seen_decision: Annotated[int | None, Form()] = None,
) -> RedirectResponse:
    """Store a decision on the entry as the page showed it: its evidence (`sections.evidence_mark`) and the
    decision waiting on it, if any (`seen_decision`). An entry resolved or changed since then, or decided on by
    someone else meanwhile, stores nothing and says so: a later decision replaces a waiting one, so it must be
    made by someone who saw that one."""
    require_run_access(request, user, sections.CLIENTS_DAG)
    if decision not in REVIEW_DECISIONS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Unknown decision")
    with state_store() as store:
        entry = store.open_client_review_entry(subject)
        if entry is None:
            return _back("review_gone", "review")
        if evidence != sections.evidence_mark(entry):
            return _back("review_changed", "review")
        if decision == "link":
            pair = (fakturownia_client_id, crm_client_id)
            if pair not in sections.link_candidates(entry):
                raise HTTPException(status.HTTP_400_BAD_REQUEST, "These two records are not offered by that entry")
        else:
            # Taken from the entry, not the form: a decision is about the records the entry names.
            fakturownia_client_id, crm_client_id = entry["fakturownia_client_id"], entry["crm_client_id"]
            if decision in PAIR_DECISIONS and (fakturownia_client_id is None or crm_client_id is None):
                raise HTTPException(
                    status.HTTP_400_BAD_REQUEST,
                    f"'{decision}' needs a Fakturownia client and a CRM client, and this entry names one side only",
                )
        stored = store.record_review_decision(
            subject,
            decision,
            decided_by=user_name(user),
            fakturownia_client_id=fakturownia_client_id,
            crm_client_id=crm_client_id,
            replacing=seen_decision,
        )
    return _back("decided" if stored is not None else "review_decided_meanwhile", "review")


@router.get("/review.csv")
def review_csv() -> FileResponse:
    """The open review list as the same CSV the client sync exports (formula-safe cells), for a spreadsheet."""
    folder = tempfile.mkdtemp(prefix="fakturownia-review-")
    path = Path(folder) / REVIEW_FILE
    with state_store() as store:
        write_review_csv(store.open_client_review(), path)

    def remove() -> None:
        path.unlink(missing_ok=True)
        os.rmdir(folder)

    return FileResponse(
        path, media_type="text/csv; charset=utf-8", filename=REVIEW_FILE, background=BackgroundTask(remove)
    )
