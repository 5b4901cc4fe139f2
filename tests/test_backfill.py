"""The backfill: Params, windows and their ledger, dry runs, overlap with the scheduled sync, the DAG."""

from __future__ import annotations

import importlib.util
import tracemalloc
from datetime import date
from pathlib import Path

import pytest
from airflow.sdk.exceptions import ParamValidationError

from fakturownia_sync.backfill import BackfillRequest, plan_invoice_windows, record_finished_window
from fakturownia_sync.config import load_config
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.invoices_to_deals import InvoicesToDeals
from fakturownia_sync.state import StateStore
from sandbox.process import SandboxProcess
from tests.airflow_harness import connections_env, dags_test
from tests.sync_harness import (
    clients_for,
    crm_picture,
    deals_by_invoice,
    demo_config,
    duplicates,
    make_sync,
    run_like_airflow,
    start_worker,
)

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 11, 25)
SIZE = {"seed": 21, "clients": 50, "invoices": 300, "crm_clients": 15}
HISTORY = (date(2023, 10, 1), date(2026, 11, 30))  # the sandbox issues invoices over the 3 years to Nov 2026


def request(**params) -> BackfillRequest:
    return BackfillRequest.from_params({"date_from": "2024-01-01", **params}, load_config(None), TODAY)


def test_params_are_validated_by_name() -> None:
    plain = request()
    assert (plain.date_to, plain.window, plain.dry_run) == (TODAY, "month", False)
    assert plain.invoice_kinds == ("vat", "vat_margin", "advance", "final", "receipt")
    assert plain.scope == "advance,final,receipt,vat,vat_margin"
    for params, name in (
        ({"date_from": "2024-13-01"}, "date_from"),
        ({"date_to": "2023-01-01"}, "date_to"),
        ({"entities": ["deals"]}, "entities"),
        ({"invoice_kinds": ["vat", "nope"]}, "invoice_kinds"),
        ({"window": "fortnight"}, "window"),
    ):
        with pytest.raises(ConfigError, match=f"'{name}'"):
            request(**params)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"date_to": "9999-12-31"}, "date_to"),
        ({"date_to": "2101-01-01"}, "date_to"),
        ({"date_from": "1999-12-31"}, "date_from"),
        ({"date_from": "0001-01-01"}, "date_from"),
    ],
)
def test_backfill_dates_outside_2000_to_2100_fail_with_one_sentence_naming_the_param(params, name) -> None:
    with pytest.raises(ConfigError) as info:
        request(**params)
    assert str(info.value).startswith(f"Param '{name}' must be between 2000-01-01 and 2100-12-31")


def test_backfill_window_count_over_the_mapping_limit_is_refused_before_windows_are_built(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    widest = request(date_from="2000-01-01", date_to="2100-12-31", window="day")
    tracemalloc.start()
    with pytest.raises(ConfigError, match="36890 windows of one day each, over Airflow's limit of 1024") as info:
        plan_invoice_windows(widest, store)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200_000, peak  # counted, not listed: 36,890 windows as dicts would take megabytes
    assert "Param 'window'" in str(info.value)
    with pytest.raises(ConfigError, match="3 windows of one month each, over Airflow's limit of 2"):
        plan_invoice_windows(request(date_to="2024-03-31"), store, max_windows=2)
    assert len(plan_invoice_windows(request(date_to="2024-03-31"), store, max_windows=3)[0]) == 3
    store.close()


def test_backfill_params_form_refuses_dates_outside_2000_to_2100_and_computes_no_default() -> None:
    spec = importlib.util.spec_from_file_location("backfill_dag", ROOT / "dags" / "fakturownia_backfill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = module.fakturownia_backfill().params
    for name in ("date_from", "date_to"):
        param = params.get_param(name)
        assert param.resolve(None) is None  # no date computed when the file is parsed
        assert param.resolve("2000-01-01") == "2000-01-01" and param.resolve("2100-12-31") == "2100-12-31"
        for bad in ("9999-12-31", "1999-12-31", "2101-01-01", "2024-13-01"):
            with pytest.raises(ParamValidationError):
                param.resolve(bad)
    defaulted = BackfillRequest.from_params({}, load_config(None), TODAY)
    assert (defaulted.date_from, defaulted.date_to) == (date(2023, 1, 1), TODAY)


def test_finished_windows_are_skipped_unless_reprocessed(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    wanted = request(date_to="2024-03-31")
    windows, skipped = plan_invoice_windows(wanted, store)
    assert [w["date_from"] for w in windows] == ["2024-01-01", "2024-02-01", "2024-03-01"] and skipped == 0
    record_finished_window(wanted, store, windows[1], {"status": "success"})
    windows, skipped = plan_invoice_windows(wanted, store)
    assert [w["date_from"] for w in windows] == ["2024-01-01", "2024-03-01"] and skipped == 1
    assert len(plan_invoice_windows(request(date_to="2024-03-31", reprocess=True), store)[0]) == 3
    # Other kinds are other work: the ledger does not skip them.
    assert len(plan_invoice_windows(request(date_to="2024-03-31", invoice_kinds=["vat"]), store)[0]) == 3
    with pytest.raises(ConfigError, match="window"):
        plan_invoice_windows(request(date_from="2023-01-01", window="day"), store)
    store.close()


def test_dry_run_writes_nothing_and_counts_what_it_would_create(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    with SandboxProcess(**SIZE) as sandbox:
        dry = InvoicesToDeals(*clients_for(sandbox), store, demo_config(), owner="backfill/dry", dry_run=True)
        planned = dry.run_window(*HISTORY)
        assert sandbox.stats("sugester")["writes"] == {}
        assert store.count_deal_links() == 0 and store.last_run("invoices_to_deals") is None
        assert store.open_quarantine_counts("invoices_to_deals") == {}
        real = make_sync(sandbox, store, owner="backfill/real").run_window(*HISTORY)
    assert planned["deals_created"] == real["deals_created"] > 0
    assert planned["clients_created"] == real["clients_created"]
    assert planned["quarantined_by_reason"] == real["quarantined_by_reason"]
    store.close()


def test_backfill_and_scheduled_sync_at_once_duplicate_nothing(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite:///{tmp_path / 'clean.db'}")
    with SandboxProcess(**SIZE) as clean:
        make_sync(clean, store).run()
        expected = crm_picture(clean)
    store.close()
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with SandboxProcess(**SIZE, latency_ms=2) as sandbox:
        scheduled = start_worker(sandbox, state_url, "fakturownia_invoices_to_deals/scheduled", tmp_path / "a.log")
        backfill_windows = [("2023-10-01", "2024-12-31"), ("2025-01-01", "2026-11-30")]
        backfills = [
            start_worker(sandbox, state_url, f"fakturownia_backfill/manual/{n}", tmp_path / f"b{n}.log", window=w)
            for n, w in enumerate(backfill_windows)
        ]
        for worker in (scheduled, *backfills):
            assert worker.wait(timeout=300) == 0
        store = StateStore.open(state_url)
        run_like_airflow(sandbox, store, owner="fakturownia_invoices_to_deals/next")  # finishes anything deferred
        store.close()
        assert duplicates(deals_by_invoice(sandbox)) == {}
        assert crm_picture(sandbox) == expected


def test_backfill_dag_maps_windows_and_a_retrigger_skips_them(airflow_env, tmp_path: Path) -> None:
    with SandboxProcess(**SIZE) as sandbox:
        env = {**airflow_env, **connections_env(sandbox, tmp_path / "state.db")}
        conf = {"date_from": "2023-10-01", "date_to": "2026-11-30", "window": "year"}
        first = dags_test(env, "fakturownia_backfill", conf)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        grouped = deals_by_invoice(sandbox)
        assert grouped and duplicates(grouped) == {}
        store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        scope = "advance,final,receipt,vat,vat_margin"
        assert len(store.finished_windows("invoices", scope)) == 4  # 2023, 2024, 2025, 2026
        store.close()
        sandbox.reset_stats()
        again = dags_test(env, "fakturownia_backfill", conf)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "0 window(s) to do, 4 skipped" in again.stdout + again.stderr
        assert sandbox.stats("sugester")["writes"] == {}
        assert len(deals_by_invoice(sandbox)) == len(grouped)
