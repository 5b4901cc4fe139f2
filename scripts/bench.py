"""`make bench`: throughput, API calls and memory of the sync against the sandbox, measured and printed.

Scenarios (each measured in a fresh process, so peak RSS belongs to that scenario alone):
  a  backfill of 10,000 invoices, sandbox at 150 ms latency and 1,000 requests/minute per API
  b  the same engine over 200,000 invoices with a higher limit, for memory
  c  an incremental run with nothing changed
  d  an incremental run with 1% of the invoices changed
  e  a dry-run backfill by month over ~5,000 invoices issued 2000-2026: calls next to the floor (the invoice
     pages of one full sweep + one pass over each side's client list + one call per non-empty window)
  f  the default config at the rate limit: the backfill as the DAG runs it (`run_backfill`: the client step,
     the plan, every monthly window against the client mirrors) over ~5,000 invoices against 150 ms and
     1,000 requests/minute per API, with no `requests_per_minute` and the default writer threads, so the
     limit is learnt from the 429s (see `rate_budget`); target: within 1.10x the floor

The floor of a backfill (a, b, f) is per API the calls any correct backfill must make (`floor_calls`): the
reads of scenario e's floor (invoice pages of one sweep, one call per non-empty window, one pass over each
client list, counted before the run) plus one write per deal and per client created or brought up to date;
in seconds, the busier API's floor calls at its limit (the sandbox's). Next to it, per API, the calls the
run needed (each request once) and made (retries included), retries and 429s, as the run summaries count
them (`run_summary.api_calls`), the sandbox's own count, and per step of the backfill its wall time next to
the time its needed calls take at the limit: where the time above the floor went. Writes a JSON file next
to the printed table.

    python -m scripts.bench [--scenarios a b c d] [--repeat 3] [--scale 0.1] [--json bench-results/bench.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HISTORY = (date(2023, 10, 1), date(2026, 11, 30))

SCENARIOS: dict[str, dict[str, Any]] = {
    "a": {
        "title": "backfill 10k invoices, 150 ms, 1000 rpm",
        "sandbox": {"invoices": 10_000, "clients": 1_000, "crm_clients": 300, "latency_ms": 150, "rpm": 1000},
        "rpm": 1000,
        "concurrency": 8,
        "step": "backfill",
    },
    "b": {
        "title": "backfill 200k invoices, 5 ms, 100k rpm (memory)",
        # 100k requests a minute: the highest `requests_per_minute` the config accepts
        "sandbox": {"invoices": 200_000, "clients": 2_000, "crm_clients": 300, "latency_ms": 5, "rpm": 100_000},
        "rpm": 100_000,
        "concurrency": 16,
        "step": "backfill",
    },
    "c": {
        "title": "incremental, nothing changed",
        "sandbox": {"invoices": 10_000, "clients": 1_000, "crm_clients": 300, "latency_ms": 150, "rpm": 1000},
        "rpm": 1000,
        "concurrency": 8,
    },
    "d": {
        "title": "incremental, 1% of invoices changed",
        "sandbox": {"invoices": 10_000, "clients": 1_000, "crm_clients": 300, "latency_ms": 150, "rpm": 1000},
        "rpm": 1000,
        "concurrency": 8,
    },
    "e": {
        "title": "backfill calls, monthly windows 2000-2026 (dry run)",
        "sandbox": {"invoices": 5_000, "clients": 1_000, "crm_clients": 300, "latency_ms": 0, "rpm": 0},
        "rpm": 0,
        "concurrency": 4,
        "range": ("2000-01-01", "2026-12-31"),
        "issued": ("2000-03-10", "2026-02-20"),  # spread over these days, in id order
    },
    "f": {
        "title": "default config at the rate limit, 5k, 1000 rpm",
        "sandbox": {"invoices": 5_000, "clients": 500, "crm_clients": 150, "latency_ms": 150, "rpm": 1000},
        "rpm": None,  # no `requests_per_minute`: the limit is learnt from 429 and Retry-After
        "concurrency": None,  # the default `crm_write_concurrency`
        "step": "backfill",
        "target": 1.10,
    },
}
API_NAMES = ("fakturownia", "sugester")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, {platform.system()}"


def _peak_rss_mb() -> float:
    """This process's own peak RSS. `ru_maxrss` is not used: Linux carries it over from the forking parent
    across exec, so a child of a big harness would report the harness's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


# The measured part runs in a child process ------------------------------------------------------------


def _engine(sandbox: dict[str, Any], state_url: str, rpm: int | None, concurrency: int | None, owner: str):
    """The demo config, plus a `requests_per_minute` and writer threads when the scenario sets them (None:
    the config's defaults, as a user who set nothing has them)."""
    from fakturownia_sync.config import load_config
    from fakturownia_sync.connections import SyncEndpoints, connect
    from fakturownia_sync.invoices_to_deals import InvoicesToDeals
    from sandbox.demo_config import DEMO_CONFIG

    settings: dict[str, Any] = dict(DEMO_CONFIG)
    if rpm is not None:
        settings["requests_per_minute"] = {"fakturownia": rpm, "sugester": rpm}
    if concurrency is not None:
        settings["crm_write_concurrency"] = concurrency
    config = load_config(settings)
    endpoints = SyncEndpoints.from_mapping({**sandbox, "state_url": state_url})
    connections = connect(endpoints, requests_per_minute=config.requests_per_minute.fakturownia)
    fakturownia, crm, store = connections.fakturownia, connections.crm, connections.store
    return connections, config, lambda: InvoicesToDeals(fakturownia, crm, store, config, owner=owner)


def run_backfill(connections, config, request, owner: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The backfill as the DAG runs it (`fakturownia_backfill`): the client step (a full client sync, or one
    pass over each client list when clients are not synced), the windows planned between the first and the
    last invoice, then each window against the client mirrors. Returns its totals (`backfill_totals`, with
    `api_calls` counting the plan's two calls too) and, to tell where the time went, per step its seconds
    and calls, and the linked clients the client sync brought up to date."""
    from fakturownia_sync.backfill_run import BackfillRun, backfill_totals
    from fakturownia_sync.run_summary import add_api_calls, api_calls

    run = BackfillRun(connections.fakturownia, connections.crm, connections.store, config, request)
    seconds: dict[str, float] = {}
    step_calls: dict[str, Any] = {}
    started = time.monotonic()
    clients = None
    if "clients" in request.entities:
        clients = run.sync_clients(f"{owner}/clients")
        step_calls["clients"] = clients["api_calls"]
    elif "invoices" in request.entities:
        before = api_calls(run.fakturownia, run.crm)
        run.read_client_bases()
        step_calls["clients"] = api_calls(run.fakturownia, run.crm, since=before)
    seconds["clients"] = time.monotonic() - started
    started, before = time.monotonic(), api_calls(run.fakturownia, run.crm)
    windows, _skipped = run.plan()
    step_calls["plan"] = api_calls(run.fakturownia, run.crm, since=before)  # the first and last issue date
    seconds["plan"] = time.monotonic() - started
    started = time.monotonic()
    summaries = [run.run_window(window, f"{owner}/{window['date_from']}") for window in windows]
    seconds["windows"] = time.monotonic() - started
    step_calls["windows"] = add_api_calls(*(summary["api_calls"] for summary in summaries))
    totals = backfill_totals(clients, summaries)
    totals["api_calls"] = add_api_calls(*step_calls.values())  # the plan's calls count too: every call made
    steps = {
        "step_seconds": {step: round(value, 2) for step, value in seconds.items()},
        "step_calls": step_calls,
        "clients_updated": {  # linked clients brought up to date by the client sync: writes it needs
            "fakturownia": (clients or {}).get("updated_in_fakturownia", 0),
            "sugester": (clients or {}).get("updated_in_crm", 0),
        },
    }
    return totals, steps


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measured step against an already running sandbox; print the result as JSON."""
    from fakturownia_sync.backfill import BackfillRequest

    connections, config, engine = _engine(
        spec["sandbox"], spec["state_url"], spec["rpm"], spec["concurrency"], spec["step"]
    )
    started = time.monotonic()
    if spec["step"] == "backfill":
        params = {"date_from": HISTORY[0].isoformat(), "date_to": HISTORY[1].isoformat(), "window": "month"}
        request = BackfillRequest.from_params(params, config, HISTORY[1])
        totals, steps = run_backfill(connections, config, request, "bench")
        totals.update(steps)
        calls = totals.pop("api_calls")
    else:  # an incremental run
        summary = engine().run()
        totals = {key: summary[key] for key in ("deals_created", "deals_updated", "clients_created", "invoices_seen")}
        calls = summary["api_calls"]
    wall = time.monotonic() - started
    peak_rss_mb = _peak_rss_mb()
    budgets = {
        client.account.api.lower(): client.transport.budget for client in (connections.fakturownia, connections.crm)
    }
    connections.close()
    return {
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        **totals,
        "summary_api_calls": calls,  # needed / made / retries / 429s, as the run summaries count them
        "rate_budget": {api: budget.report() for api, budget in budgets.items()},
    }


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--child", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"benchmark step {spec['step']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# The harness ------------------------------------------------------------------------------------------


def floor_calls(floor: dict[str, int], totals: dict[str, Any]) -> dict[str, int]:
    """Per API, the calls any correct backfill must make (the issue's floor): the reads of `backfill_floor`
    on their API, plus one write per deal and per client created, and per linked client the client sync
    brings up to date, by the run's own counts."""
    updated = totals.get("clients_updated") or {}
    return {
        "fakturownia": floor["invoice_pages"]
        + floor["non_empty_windows"]
        + floor["fakturownia_client_pages"]
        + totals.get("fakturownia_clients_created", 0)
        + updated.get("fakturownia", 0),
        "sugester": floor["crm_client_pages"]
        + totals.get("deals_created", 0)
        + totals.get("deals_updated", 0)
        + totals.get("crm_clients_created", 0)
        + updated.get("sugester", 0),
    }


def measure(name: str, repeat: int, scale: float = 1.0) -> dict[str, Any]:
    from fakturownia_sync.connections import SyncEndpoints
    from sandbox.demo_config import DEMO_CONFIG
    from sandbox.process import SandboxProcess

    scenario = dict(SCENARIOS[name])
    scenario["sandbox"] = {
        key: max(1, int(value * scale)) if key in ("invoices", "clients", "crm_clients") else value
        for key, value in scenario["sandbox"].items()
    }
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp, SandboxProcess(seed=42, **scenario["sandbox"]) as sandbox:
            spec = {
                "sandbox": SyncEndpoints.of(sandbox).as_mapping(),
                "state_url": f"sqlite:///{tmp}/state.db",
                "rpm": scenario["rpm"],
                "concurrency": scenario["concurrency"],
            }
            if name in ("c", "d"):  # history synced and the cursor set first; not measured
                sandbox.set_faults(latency_ms=0, rpm=0)
                _run_child({**spec, "step": "incremental", "rpm": 0})
                sandbox.set_faults(latency_ms=scenario["sandbox"]["latency_ms"], rpm=scenario["rpm"])
            if name == "d":
                _touch_invoices(sandbox, share=0.01)
            if scenario.get("step") == "backfill":  # the lists as the run finds them
                kinds = tuple(DEMO_CONFIG["invoice_kinds"])
                reads = backfill_floor(sandbox, HISTORY[0].isoformat(), HISTORY[1].isoformat(), kinds)
            sandbox.reset_stats()
            result = _run_child({**spec, "step": scenario.get("step", "incremental")})
            stats = {api: sandbox.stats(api) for api in API_NAMES}
            result["api_calls"] = {api: stats[api]["requests"] for api in stats}  # as the server counted them
            result["writes"] = sum(stats["sugester"]["writes"].values())
            result["rate_limited"] = {api: stats[api]["faults"]["rate_limited"] for api in stats}
            result["by_endpoint"] = {api: stats[api]["by_endpoint"] for api in stats}  # where the calls went
            result["by_endpoint_writes"] = {api: stats[api]["writes"] for api in stats}  # writes that landed
            if scenario.get("step") == "backfill":
                minimum = floor_calls(reads, result)
                result["floor_reads"], result["minimum_calls"] = reads, minimum
                floor = max(minimum.values()) / scenario["sandbox"]["rpm"] * 60  # the API's limit, not ours
                result["floor_seconds"] = round(floor, 1)
                result["vs_floor"] = round(result["wall_seconds"] / floor, 3)
            runs.append(result)
    median = {key: statistics.median(run[key] for run in runs) for key in ("wall_seconds", "peak_rss_mb")}
    if scenario.get("step") == "backfill":
        median["vs_floor"] = statistics.median(run["vs_floor"] for run in runs)
    return {"scenario": name, "title": scenario["title"], "median": median, "runs": runs}


def render_calls(result: dict[str, Any]) -> str:
    """Scenario f's report: wall time against the floor; per API the floor next to the calls needed and made;
    per step of the backfill its time next to the time its needed calls take at the limit (where the time
    above the floor went); what the rate budgets learnt."""
    scenario = SCENARIOS[result["scenario"]]
    rpm = scenario["sandbox"]["rpm"]
    run = sorted(result["runs"], key=lambda r: r["wall_seconds"])[len(result["runs"]) // 2]
    minimum, counted = run["minimum_calls"], run["summary_api_calls"]
    busier = max(minimum, key=minimum.get)
    target = scenario.get("target")
    verdict = (
        "" if target is None else f" (target <= {target:.2f}x: {'met' if run['vs_floor'] <= target else 'MISSED'})"
    )
    walls = ", ".join(f"{r['wall_seconds']:.1f}" for r in result["runs"])
    lines = [
        f"{result['scenario']}. {result['title']}: the backfill as the DAG runs it (client step, plan, monthly "
        "windows), 150 ms, no requests_per_minute",
        f"  wall {run['wall_seconds']:.1f} s (median of {len(result['runs'])}: {walls}), floor "
        f"{run['floor_seconds']:.1f} s ({minimum[busier]} {busier} calls needed at {rpm}/min): "
        f"{run['vs_floor']:.2f}x the floor{verdict}",
        f"  {'API':<12} {'floor':>7} {'needed':>7} {'made':>7} {'retries':>7} {'429s':>5}   "
        "sandbox: calls, 429s, writes landed",
    ]
    for api in API_NAMES:
        row = counted.get(api, {})
        lines.append(
            f"  {api:<12} {minimum[api]:>7} {row.get('needed', 0):>7} {row.get('made', 0):>7} "
            f"{row.get('retries', 0):>7} {row.get('rate_limited', 0):>5}   "
            f"{run['api_calls'][api]:>13}, {run['rate_limited'][api]}, {sum(run['by_endpoint_writes'][api].values())}"
        )
    lines.append(f"  {'step':<12} {'wall s':>7} {'at limit':>8}  calls needed F/S (at limit: the busier API's)")
    for step, seconds in run["step_seconds"].items():
        calls = run["step_calls"].get(step, {})
        needed = {api: calls.get(api, {}).get("needed", 0) for api in API_NAMES}
        at_limit = max(needed.values()) / rpm * 60
        lines.append(f"  {step:<12} {seconds:>7.1f} {at_limit:>8.1f}  {needed['fakturownia']}/{needed['sugester']}")
    for api, budget in run["rate_budget"].items():
        learnt = "none" if budget["learnt_per_minute"] is None else f"{budget['learnt_per_minute']:.0f}/min"
        lines.append(
            f"  {api} rate budget: learnt {learnt} at the end, {budget['cuts']} cut(s), "
            f"{budget['waited_seconds']:.0f} s waited over all threads"
        )
    return "\n".join(lines)


def spread_history(path: Path, seed: int, sizes: dict[str, int], first: str, last: str) -> Path:
    """A sandbox state file whose invoices are issued evenly from `first` to `last`, in id order."""
    from datetime import timedelta

    from sandbox.process import SandboxProcess

    with SandboxProcess(seed=seed, state_file=path, **sizes) as sandbox:
        sandbox.save()
    document = json.loads(path.read_text(encoding="utf-8"))
    invoices = sorted(document["fakturownia"]["invoices"], key=lambda invoice: invoice["id"])
    start, span = date.fromisoformat(first), (date.fromisoformat(last) - date.fromisoformat(first)).days
    for number, invoice in enumerate(invoices):
        day = (start + timedelta(days=span * number // max(1, len(invoices) - 1))).isoformat()
        invoice["issue_date"] = day
        if "sell_date" in invoice:
            invoice["sell_date"] = day
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def backfill_floor(sandbox, date_from: str, date_to: str, kinds: tuple[str, ...]) -> dict[str, int]:
    """The calls any backfill of the range must make: the invoice pages of one full sweep, one pass over
    each side's client list, one call per non-empty (monthly) window."""
    fakturownia, crm = sandbox.dump("fakturownia"), sandbox.dump("sugester")
    issued = [
        invoice["issue_date"]
        for invoice in fakturownia["invoices"]
        if invoice.get("income") is not False
        and invoice.get("kind") in kinds
        and isinstance(invoice.get("issue_date"), str)
        and date_from <= invoice["issue_date"] <= date_to
    ]
    return {
        "invoice_pages": math.ceil(len(issued) / 100),
        "fakturownia_client_pages": math.ceil(len(fakturownia["clients"]) / 100),
        "crm_client_pages": math.ceil(len(crm["clients"]) / 100),
        "non_empty_windows": len({day[:7] for day in issued}),
    }


def backfill_calls(sandbox, state_url: str, date_from: str, date_to: str, concurrency: int = 4) -> dict[str, Any]:
    """A monthly dry-run backfill, then the real one: the calls of each next to the floor, and both totals."""
    from fakturownia_sync.backfill import BackfillRequest
    from fakturownia_sync.backfill_run import backfill_totals, dry_run
    from fakturownia_sync.config import load_config
    from fakturownia_sync.connections import SyncEndpoints, connect
    from sandbox.demo_config import DEMO_CONFIG

    config = load_config({**DEMO_CONFIG, "crm_write_concurrency": concurrency})
    params = {"date_from": date_from, "date_to": date_to, "window": "month"}
    endpoints = SyncEndpoints.from_mapping({**SyncEndpoints.of(sandbox).as_mapping(), "state_url": state_url})

    def requests_made() -> dict[str, int]:
        stats = {api: sandbox.stats(api) for api in ("fakturownia", "sugester")}
        reads = {api: stats[api]["requests"] - sum(stats[api]["writes"].values()) for api in stats}
        return {"reads": sum(reads.values()), "writes": sum(sum(s["writes"].values()) for s in stats.values())}

    floor = backfill_floor(sandbox, date_from, date_to, tuple(config.invoice_kinds))  # before the run adds clients
    result: dict[str, Any] = {}
    for mode in ("dry", "real"):
        request = BackfillRequest.from_params({**params, "dry_run": mode == "dry"}, config, date.fromisoformat(date_to))
        sandbox.reset_stats()
        with connect(endpoints) as connections:
            fakturownia, crm, store = connections.fakturownia, connections.crm, connections.store
            if mode == "dry":
                planned = dry_run(fakturownia, crm, store, config, request, owner="bench/dry")
                totals = backfill_totals(planned["clients"], planned["windows"])
            else:
                totals, _steps = run_backfill(connections, config, request, "bench")
        # calls needed/made by the summaries, next to the counts (the dry run sends no writes: not compared)
        result[mode] = {"calls": requests_made(), "api_calls": totals.pop("api_calls"), "totals": totals}
    result["floor"] = {**floor, "total": sum(floor.values())}
    result["ratio"] = round(result["dry"]["calls"]["reads"] / result["floor"]["total"], 3)
    result["real_reads_ratio"] = round(result["real"]["calls"]["reads"] / result["floor"]["total"], 3)
    counts = [{k: v for k, v in result[mode]["totals"].items() if k != "client_review"} for mode in ("dry", "real")]
    result["dry_equals_real"] = counts[0] == counts[1]
    return result


def measure_backfill_calls(name: str, scale: float) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    sizes = {
        key: max(1, int(value * scale))
        for key, value in scenario["sandbox"].items()
        if key in ("invoices", "clients", "crm_clients")
    }
    from sandbox.process import SandboxProcess

    with tempfile.TemporaryDirectory() as tmp:
        state = spread_history(Path(tmp) / "sandbox.json", 42, sizes, *scenario["issued"])
        with SandboxProcess(seed=42, state_file=state, **sizes) as sandbox:
            result = backfill_calls(sandbox, f"sqlite:///{tmp}/state.db", *scenario["range"], scenario["concurrency"])
    return {"scenario": name, "title": scenario["title"], "backfill_calls": result}


def render_backfill_calls(result: dict[str, Any]) -> str:
    calls = result["backfill_calls"]
    floor = calls["floor"]
    parts = " + ".join(f"{floor[k]} {k.replace('_', ' ')}" for k in floor if k != "total")
    return "\n".join(
        [
            f"{result['scenario']} {result['title']}",
            f"  floor          {floor['total']:>6}  ({parts})",
            f"  dry run calls  {calls['dry']['calls']['reads']:>6}  {calls['ratio']:.2f}x the floor (target <= 1.20x)",
            f"  real run reads {calls['real']['calls']['reads']:>6}  {calls['real_reads_ratio']:.2f}x the floor, "
            f"plus {calls['real']['calls']['writes']} writes",
            f"  dry run predicted the real run's counts exactly: {'yes' if calls['dry_equals_real'] else 'NO'}",
            "  real run, as its summaries count (needed/made): "
            + ", ".join(
                f"{api} {row.get('needed', 0)}/{row.get('made', 0)}" for api, row in calls["real"]["api_calls"].items()
            ),
        ]
    )


def _touch_invoices(sandbox, share: float) -> None:
    """Edit `share` of the sales invoices through the API, as users would."""
    import requests

    invoices = [i for i in sandbox.dump("fakturownia")["invoices"] if i.get("income") is not False]
    step = max(1, round(1 / share))
    for invoice in invoices[::step]:
        requests.put(
            f"{sandbox.fakturownia_url}/invoices/{invoice['id']}.json",
            json={"api_token": sandbox.fakturownia_token, "invoice": {"price_gross": "1234.56"}},
            timeout=30,
        ).raise_for_status()


def render(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'scenario':<50} {'wall s':>8} {'vs floor':>8} {'calls F/S':>13} {'floor F/S':>13} "
        f"{'writes':>7} {'RSS MB':>7}"
    )
    lines = [head, "-" * len(head)]
    for result in results:
        run = sorted(result["runs"], key=lambda r: r["wall_seconds"])[len(result["runs"]) // 2]
        calls = f"{run['api_calls']['fakturownia']}/{run['api_calls']['sugester']}"
        minimum = run.get("minimum_calls")
        minimum_text = f"{minimum['fakturownia']}/{minimum['sugester']}" if minimum else "-"
        vs_floor = f"{result['median']['vs_floor']:.2f}x" if "vs_floor" in result["median"] else "-"
        lines.append(
            f"{result['scenario'] + ' ' + result['title']:<50} {result['median']['wall_seconds']:>8.1f} "
            f"{vs_floor:>8} {calls:>13} {minimum_text:>13} {run['writes']:>7} {result['median']['peak_rss_mb']:>7.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario; the table shows medians")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench.json")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the data sets (e.g. 0.05 for a smoke run)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    results, backfill_results = [], []
    for name in args.scenarios:
        print(f"measuring {name}: {SCENARIOS[name]['title']} ({args.repeat} run(s)) ...", flush=True)
        if name == "e":  # call counts, not time: one run says it all
            backfill_results.append(measure_backfill_calls(name, args.scale))
        else:
            results.append(measure(name, args.repeat, args.scale))
    report = {
        "machine": machine(),
        "date": date.today().isoformat(),
        "repeat": args.repeat,
        "scale": args.scale,
        "results": results + backfill_results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nMachine: {report['machine']}\n")
    if results:
        print(render(results))
    for result in results:
        if result["scenario"] == "f":
            print("\n" + render_calls(result))
    for result in backfill_results:
        print("\n" + render_backfill_calls(result))
    print(f"\nF = Fakturownia, S = Sugester; medians of {args.repeat} run(s). JSON: {args.json}")


if __name__ == "__main__":
    main()
