"""`make demo` and `make airflow`: the whole product on one machine, against the sandbox.

    python -m scripts.demo           start (or reuse) the sandbox, prepare Airflow, run the client sync, open a few won
                                     deals in the CRM, run deals → invoices and invoices → deals once each, print
                                     their summaries
    python -m scripts.demo prepare   the same without the run (used by `make airflow`)
    python -m scripts.demo stop      stop the sandbox (it saves its data, so the next start continues from it)

The sandbox keeps running between demos, so a second `make demo` syncs against the same CRM and creates
no new deals. Its data is saved to `.demo/sandbox-state.json` on stop; when the sandbox has to start from
a fresh seed, the sync state is reset too, so the two never disagree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from fakturownia_sync.connections import open_state_store, state_db_url
from fakturownia_sync.run_summary import render_summary
from sandbox.config import SandboxConfig
from sandbox.seed import INVOICED_STATUS, INVOICING_STATUS, invoicing_deals

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
SANDBOX_INFO = DEMO / "sandbox.json"
SANDBOX_STATE = DEMO / "sandbox-state.json"
SANDBOX_LOG = DEMO / "sandbox.log"
# The sandbox's own defaults (`python -m sandbox`), so the demo and a hand-started sandbox agree.
_DEFAULTS = SandboxConfig()
PORTS = {"fakturownia": _DEFAULTS.fakturownia_port, "sugester": _DEFAULTS.sugester_port}
TOKENS = {"fakturownia": _DEFAULTS.fakturownia_token, "sugester": _DEFAULTS.sugester_token}


def _alive(info: dict) -> bool:
    try:
        os.kill(info["pid"], 0)
        return all(
            requests.get(f"{info[f'{api}_url']}/_sandbox/health", timeout=2).ok for api in ("fakturownia", "sugester")
        )
    except (OSError, KeyError, requests.RequestException):
        return False


def ensure_sandbox() -> tuple[dict, bool]:
    """The running sandbox's URLs and tokens, starting it if needed; True when it starts from a fresh seed."""
    if SANDBOX_INFO.exists():
        info = json.loads(SANDBOX_INFO.read_text())
        if _alive(info):
            return info, False
    for port in PORTS.values():
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                sys.exit(
                    f"Port {port} is taken by another process (another checkout's sandbox? `make stop` there); "
                    f"the demo sandbox needs ports {PORTS['fakturownia']} and {PORTS['sugester']}."
                )
    fresh = not SANDBOX_STATE.exists()
    command = [
        sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--seed", "42",
        "--fakturownia-port", str(PORTS["fakturownia"]), "--sugester-port", str(PORTS["sugester"]),
        "--fakturownia-token", TOKENS["fakturownia"], "--sugester-token", TOKENS["sugester"],
        "--state-file", str(SANDBOX_STATE),
    ]  # fmt: skip
    log = SANDBOX_LOG.open("ab")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    info = {
        "pid": process.pid,
        "fakturownia_url": f"http://127.0.0.1:{PORTS['fakturownia']}",
        "sugester_url": f"http://127.0.0.1:{PORTS['sugester']}",
        "fakturownia_token": TOKENS["fakturownia"],
        "sugester_token": TOKENS["sugester"],
    }
    deadline = time.monotonic() + 90
    while not _alive(info):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"The sandbox did not start (ports {PORTS} busy?); see {SANDBOX_LOG}")
        time.sleep(0.3)
    SANDBOX_INFO.write_text(json.dumps(info, indent=2))
    print(f"Sandbox started (pid {process.pid}): Fakturownia {info['fakturownia_url']}, CRM {info['sugester_url']}")
    return info, fresh


def stop_sandbox() -> None:
    if not SANDBOX_INFO.exists():
        print("No sandbox is running.")
        return
    info = json.loads(SANDBOX_INFO.read_text())
    try:
        os.kill(info["pid"], signal.SIGTERM)
        for _ in range(100):
            os.kill(info["pid"], 0)
            time.sleep(0.1)
    except OSError:
        pass
    SANDBOX_INFO.unlink(missing_ok=True)
    print(f"Sandbox stopped; its data is kept in {SANDBOX_STATE.relative_to(ROOT)}.")


def prepare() -> None:
    DEMO.mkdir(exist_ok=True)
    _info, fresh = ensure_sandbox()
    state_db = Path(state_db_url(None).removeprefix("sqlite:///"))
    if fresh:
        for path in (state_db, *state_db.parent.glob(state_db.name + "-*")):
            path.unlink(missing_ok=True)
    setup_log = DEMO / "airflow-setup.log"
    with setup_log.open("w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "scripts.airflow_setup", "--sandbox", str(SANDBOX_INFO)], stdout=log, stderr=log
        )
    if done.returncode != 0:
        print(setup_log.read_text()[-4000:])
        sys.exit(f"Preparing Airflow failed; full log in {setup_log}")
    print(f"Airflow prepared in .demo/airflow (connections, config Variable; log: {setup_log.relative_to(ROOT)}).")


def run_dag(dag_id: str, stream: str) -> tuple[dict, float]:
    """One `airflow dags test` of the DAG; its run summary from the state DB and the command's wall time."""
    airflow = Path(sys.executable).with_name("airflow")
    log_path = DEMO / f"{dag_id}.log"
    print(f"Running {dag_id} once (airflow dags test; log: {log_path.relative_to(ROOT)}) ...")
    started = time.monotonic()
    with log_path.open("w") as log:
        result = subprocess.run([str(airflow), "dags", "test", dag_id], stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - started
    store = open_state_store(None)
    last = store.last_run(stream)
    store.close()
    if result.returncode != 0 or not last or last["status"] not in ("success", "incomplete"):
        print(log_path.read_text()[-4000:])
        sys.exit(f"The DAG run failed (exit {result.returncode}); full log in {log_path}")
    return last["summary"], wall


def show_clients(summary: dict, wall: float) -> None:
    print(
        render_summary(
            {
                "clients linked (matched)": summary["clients_linked"],
                "created in the CRM / in Fakturownia": f"{summary['created_in_crm']} / "
                f"{summary['created_in_fakturownia']}",
                "updated in the CRM / in Fakturownia": f"{summary['updated_in_crm']} / "
                f"{summary['updated_in_fakturownia']}",
                "conflicts settled": summary["conflicts"],
                "review entries by reason": summary["review_by_reason"] or "-",
                "API calls": summary["api_calls"],
                "sync run time": f"{summary['duration_seconds']:.1f} s (whole `airflow dags test`: {wall:.1f} s)",
                "run status": summary["status"],
            }
        )
    )


def show_invoices(summary: dict, wall: float) -> None:
    print(
        render_summary(
            {
                "invoices seen": summary["invoices_seen"],
                "deals created": summary["deals_created"],
                "deals updated": summary["deals_updated"],
                "deals unchanged": summary["deals_unchanged"],
                "deals recovered after a crash": summary["deals_recovered"],
                "quarantined invoices retried / resolved": f"{summary['quarantine_retried']} / "
                f"{summary['quarantine_resolved']}",
                "CRM clients created / linked": f"{summary['clients_created']} / {summary['clients_linked']}",
                "skipped by kind": summary["skipped_by_kind"] or "-",
                "skipped: cost invoices / cancelled": f"{summary['skipped_cost']} / {summary['skipped_cancelled']}",
                "quarantined this run, by reason": summary["quarantined_by_reason"] or "-",
                "quarantine still open, by reason": summary["quarantine_open"] or "-",
                "API calls": summary["api_calls"],
                "sync run time": f"{summary['duration_seconds']:.1f} s (whole `airflow dags test`: {wall:.1f} s)",
                "run status": summary["status"],
            }
        )
    )


def open_won_deals() -> int:
    """Salespeople's won deals in the CRM ("Dodaj fakturę"), posted once per sandbox: once any deal sits in the
    invoicing or the invoiced status (deals made from invoices carry no status), the demo's deals were opened
    before, under whatever name the sync has given them since, so a second demo adds none. Returns how many
    were added."""
    info = json.loads(SANDBOX_INFO.read_text())
    crm = requests.get(f"{info['sugester_url']}/_sandbox/dump", timeout=60).json()
    demo_statuses = {s["id"] for s in crm["statuses"] if s["name"] in (INVOICING_STATUS, INVOICED_STATUS)}
    if any(deal.get("status_id") in demo_statuses for deal in crm["deals"]):
        return 0
    team = requests.get(f"{info['sugester_url']}/app/users/team.json", params={"api_token": info["sugester_token"]})
    crm["users"] = team.json()
    known = {deal["name"] for deal in crm["deals"]}
    added = 0
    for deal in invoicing_deals(crm):
        if deal["name"] in known:
            continue
        body = {"api_token": info["sugester_token"], "deal": deal}
        requests.post(f"{info['sugester_url']}/app/deals.json", json=body, timeout=30).raise_for_status()
        added += 1
    return added


def show_deal_invoicing(summary: dict, wall: float, added: int) -> None:
    print(
        render_summary(
            {
                "won deals opened in the CRM for the demo": added,
                "deals in the invoicing status": summary["deals_marked"],
                "invoices created": summary["invoices_created"],
                "invoices found again (lost answers)": summary["invoices_recovered"],
                "deals written back (link, status)": summary["deals_written_back"],
                "deals already invoiced / made from invoices": f"{summary['deals_already_invoiced']} / "
                f"{summary['deals_from_invoices']}",
                "quarantined this run, by reason": summary["quarantined_by_reason"] or "-",
                "API calls": summary["api_calls"],
                "sync run time": f"{summary['duration_seconds']:.1f} s (whole `airflow dags test`: {wall:.1f} s)",
                "run status": summary["status"],
            }
        )
    )


def demo() -> None:
    show_clients(*run_dag("fakturownia_clients_sync", "clients_sync"))
    added = open_won_deals()
    show_deal_invoicing(*run_dag("crm_deals_to_invoices", "deals_to_invoices"), added)
    show_invoices(*run_dag("fakturownia_invoices_to_deals", "invoices_to_deals"))
    print(
        "\nRun `make demo` again: it syncs against the same sandbox and creates 0 deals and 0 invoices.\n"
        "Open the UI with `make airflow`, then http://localhost:8080 (user `admin`, password printed by\n"
        "Airflow and kept in .demo/airflow/simple_auth_manager_passwords.json.generated).\n"
        "The quarantine, the client review list and the integration check: Browse → Fakturownia ↔ CRM sync.\n"
        "Review list of clients as CSV: .demo/airflow/fakturownia_sync_review/client_review.csv\n"
        "`make stop` stops the sandbox."
    )


def main(argv: list[str]) -> None:
    command = argv[0] if argv else "demo"
    if command == "stop":
        stop_sandbox()
        return
    prepare()
    if command == "demo":
        demo()


if __name__ == "__main__":
    main(sys.argv[1:])
