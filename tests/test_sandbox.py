"""The sandbox speaks both vendor APIs over real sockets, with seeded data and fault knobs.

Every test talks to a real ``python -m sandbox`` subprocess through
:class:`sandbox.process.SandboxProcess`; nothing is patched.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from time import monotonic, sleep

import pytest
import requests
from stdnum.pl import nip as stdnum_nip

from sandbox.clock import add_months, today
from sandbox.process import SandboxProcess
from sandbox.records import KINDS

SMALL = {"clients": 40, "invoices": 300, "crm_clients": 20}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0[12]:00$")


@pytest.fixture(scope="module")
def default_sandbox() -> Iterator[SandboxProcess]:
    """The default seed (500 clients, 3000 invoices, 150 CRM clients), shared by read-only tests."""
    with SandboxProcess(seed=42) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    """A small private sandbox for tests that write or turn fault knobs."""
    with SandboxProcess(seed=7, **SMALL) as sandbox:
        yield sandbox


def fk_get(sb: SandboxProcess, path: str, **params: object) -> requests.Response:
    return requests.get(f"{sb.fakturownia_url}{path}", params={"api_token": sb.fakturownia_token, **params}, timeout=30)


def sg_get(sb: SandboxProcess, path: str, **params: object) -> requests.Response:
    return requests.get(f"{sb.sugester_url}/app{path}", params={"api_token": sb.sugester_token, **params}, timeout=30)


def sg_post(sb: SandboxProcess, path: str, payload: dict) -> requests.Response:
    return requests.post(f"{sb.sugester_url}/app{path}", json={"api_token": sb.sugester_token, **payload}, timeout=30)


def instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


# -- seeded data ---------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_differs() -> None:
    with SandboxProcess(seed=5, **SMALL) as first, SandboxProcess(seed=5, **SMALL) as second:
        for api in ("fakturownia", "sugester"):
            a, b = first.dump(api), second.dump(api)
            if api == "fakturownia":
                # view_url names the serving port; everything stored is identical.
                for dump in (a, b):
                    for invoice in dump["invoices"]:
                        assert invoice.pop("view_url").endswith(f"/invoice/{invoice['token']}")
            assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
        with SandboxProcess(seed=6, **SMALL) as other:
            assert other.dump("sugester")["clients"] != first.dump("sugester")["clients"]
            assert other.dump("fakturownia")["clients"] != first.dump("fakturownia")["clients"]


def test_default_seed_contains_every_awkward_case(default_sandbox: SandboxProcess) -> None:
    dump = default_sandbox.dump("fakturownia")
    clients, invoices = dump["clients"], dump["invoices"]
    assert len(clients) == 500 and len(invoices) == 3000
    assert [d["id"] for d in dump["departments"]] == [11, 12, 13]

    kinds = Counter(i["kind"] for i in invoices)
    assert set(kinds) == set(KINDS) and len(KINDS) == 24
    assert kinds.most_common(1)[0][0] == "vat"
    assert all(kinds[k] >= 2 for k in ("vat_margin", "advance", "final", "receipt", "correction", "proforma", "bill"))

    by_id = {i["id"]: i for i in invoices}
    corrections = [i for i in invoices if i["kind"] == "correction"]
    assert corrections and all(by_id[c["invoice_id"]]["id"] < c["id"] for c in corrections)
    assert any(i["cancelled"] for i in invoices)
    cost = [i for i in invoices if not i["income"]]
    assert 0.02 < len(cost) / len(invoices) < 0.09
    assert {i["currency"] for i in invoices} >= {"PLN", "EUR"}
    assert {i["department_id"] for i in invoices} == {11, 12, 13, None}

    blank = [i for i in invoices if i["client_id"] is None and i["buyer_name"] == ""]
    assert len(blank) == 5
    assert all(i["kind"] == "vat" and i["income"] for i in blank)
    assert all(v == "" for i in blank for k, v in i.items() if k.startswith("buyer_"))
    malformed = [i for i in invoices if _bad_date(i["issue_date"])]
    assert len(malformed) == 5 and all(i["kind"] == "vat" and i["income"] for i in malformed)

    with_nip = [c for c in clients if c["tax_no"]]
    assert with_nip and any(not c["tax_no"] for c in clients)
    assert any(not c["company"] and c["first_name"] and c["last_name"] for c in clients)
    valid = [c for c in with_nip if stdnum_nip.is_valid(c["tax_no"].removeprefix("PL").strip())]
    assert 0.9 < len(valid) / len(with_nip) < 1.0
    spellings = {re.sub(r"\d", "9", c["tax_no"]) for c in with_nip}
    assert {"9999999999", "999-999-99-99", "999 999 99 99", "PL9999999999", "PL 999-999-99-99"} <= spellings
    assert any(re.search(r"ą|ć|ę|ł|ń|ó|ś|ź|ż", c["name"]) for c in clients)
    assert any(c["email"] and c["email"] != c["email"].strip() for c in clients)
    updated = [c["updated_at"] for c in clients]
    assert len(set(updated)) == len(updated)
    assert all(instant(c["created_at"]) <= instant(c["updated_at"]) for c in clients)
    assert all(TIMESTAMP.match(i["updated_at"]) for i in invoices)
    assert {i["updated_at"][-6:] for i in invoices} == {"+01:00", "+02:00"}
    assert len({i["updated_at"] for i in invoices}) == len(invoices)

    paid = [i for i in invoices if i["status"] == "paid" and i["kind"] == "vat" and not i["cancelled"]]
    assert paid and all(i["paid_date"] for i in paid)
    assert all(i["paid_date"] == "" for i in invoices if i["status"] in ("issued", "sent"))
    sample = paid[0]
    assert sample["buyer_name"] == next(c for c in clients if c["id"] == sample["client_id"])["name"]
    assert _cents(sample["price_net"]) == sum(_cents(p["total_price_net"]) for p in sample["positions"])
    assert _cents(sample["price_gross"]) - _cents(sample["price_net"]) == _cents(sample["price_tax"])
    assert re.fullmatch(r"FV \d+/\d{2}/\d{4}", sample["number"])

    crm = default_sandbox.dump("sugester")
    assert len(crm["clients"]) == 150 and crm["deals"] == []
    assert [d["id"] for d in crm["departments"]] == [1, 2, 3]
    fk_nips = {re.sub(r"\D", "", c["tax_no"]): c for c in with_nip}
    shared = [c for c in crm["clients"] if c["tax_no"] and re.sub(r"\D", "", c["tax_no"]) in fk_nips]
    assert len(shared) > 30
    assert all(c["tax_no"] != fk_nips[re.sub(r"\D", "", c["tax_no"])]["tax_no"] for c in shared)
    assert all(c["external_id"] is None and c["external_ids"] == {} for c in crm["clients"])


def _bad_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return True
    return False


def _cents(amount: str) -> int:
    return round(float(amount) * 100)


# -- listing -------------------------------------------------------------------


def test_default_period_hides_old_invoices_but_period_all_shows_them(default_sandbox: SandboxProcess) -> None:
    def all_pages(**params: object) -> list[dict]:
        items, page = [], 1
        while True:
            batch = fk_get(default_sandbox, "/invoices.json", per_page=100, page=page, **params).json()
            items += batch
            if len(batch) < 100:
                return items
            page += 1

    recent = all_pages()
    everything = all_pages(period="all")
    sales = [i for i in default_sandbox.dump("fakturownia")["invoices"] if i["income"]]
    assert len(everything) == len(sales)
    cutoff = add_months(today(), -12).isoformat()
    assert 0 < len(recent) < len(everything)
    assert all(cutoff <= i["issue_date"] <= today().isoformat() for i in recent)
    assert len({i["id"] for i in everything}) == len(everything)
    assert "positions" not in everything[0]
    costs = all_pages(period="all", income="no")
    assert costs and all(i["income"] is False for i in costs)
    window = fk_get(default_sandbox, "/invoices.json", period="more", date_from="2024-03-01", date_to="2024-03-31")
    assert window.json() and all(i["issue_date"].startswith("2024-03") for i in window.json())


def test_per_page_is_capped_and_ordering_is_total(default_sandbox: SandboxProcess) -> None:
    assert len(fk_get(default_sandbox, "/invoices.json", period="all").json()) == 25
    assert len(fk_get(default_sandbox, "/invoices.json", period="all", per_page=500).json()) == 100
    assert len(fk_get(default_sandbox, "/clients.json", per_page=1000).json()) == 100
    assert len(sg_get(default_sandbox, "/clients.json", per_page=1000).json()) == 100

    pages = [
        fk_get(default_sandbox, "/invoices.json", period="all", order="updated_at.desc", per_page=100, page=n).json()
        for n in (1, 2, 3)
    ]
    stamps = [instant(i["updated_at"]) for page in pages for i in page]
    assert stamps == sorted(stamps, reverse=True)
    ids = [i["id"] for i in fk_get(default_sandbox, "/invoices.json", period="all", per_page=100).json()]
    assert ids == sorted(ids, reverse=True)
    vat = fk_get(default_sandbox, "/invoices.json", period="all", kind="receipt", per_page=100).json()
    assert vat and {i["kind"] for i in vat} == {"receipt"}
    several = fk_get(default_sandbox, "/invoices.json", period="all", per_page=100, **{"kinds[]": ["bill", "final"]})
    assert {i["kind"] for i in several.json()} == {"bill", "final"}
    with_lines = fk_get(default_sandbox, "/invoices.json", period="all", include_positions="true").json()
    assert all(i["positions"] for i in with_lines)
    picked = fk_get(default_sandbox, "/invoices.json", period="all", invoice_ids="3,5,7,999999").json()
    assert picked and {i["id"] for i in picked} <= {3, 5, 7}


def test_clients_filters_and_order(default_sandbox: SandboxProcess) -> None:
    first = fk_get(default_sandbox, "/clients.json").json()[0]
    assert first["id"] == 1
    by_nip = fk_get(default_sandbox, "/clients.json", tax_no=first["tax_no"] or "none").json()
    assert first["tax_no"] is None or first["id"] in [c["id"] for c in by_nip]
    newest = fk_get(default_sandbox, "/clients.json", order="updated_at.desc", per_page=100).json()
    stamps = [instant(c["updated_at"]) for c in newest]
    assert stamps == sorted(stamps, reverse=True)
    assert fk_get(default_sandbox, "/clients.json", external_id="nope").json() == []
    assert len(fk_get(default_sandbox, "/departments.json").json()) == 3
    assert [d["id"] for d in sg_get(default_sandbox, "/departments.json").json()] == [1, 2, 3]
    assert sg_get(default_sandbox, "/users/team.json").json()[0].keys() >= {"id", "login", "email", "name"}


# -- errors and writes ---------------------------------------------------------


def test_wrong_token_gets_401_in_each_vendors_words(sandbox: SandboxProcess) -> None:
    fk = requests.get(f"{sandbox.fakturownia_url}/invoices.json", params={"api_token": "nope"}, timeout=10)
    assert fk.status_code == 401
    assert fk.json() == {"code": "error", "message": "You must be logged in to gain access to the site"}
    assert requests.get(f"{sandbox.fakturownia_url}/clients.json", timeout=10).status_code == 401
    sg = requests.post(f"{sandbox.sugester_url}/app/deals.json", json={"api_token": "x", "deal": {"name": "a"}})
    assert sg.status_code == 401
    assert sg.json() == {"status": "error", "message": "Nieprawidłowy api_token"}
    bearer = requests.get(
        f"{sandbox.sugester_url}/app/clients.json",
        headers={"Authorization": f"Bearer {sandbox.sugester_token}"},
        timeout=10,
    )
    assert bearer.status_code == 200
    assert sandbox.dump("sugester")["deals"] == []


def test_not_found_and_validation_bodies(sandbox: SandboxProcess) -> None:
    missing = fk_get(sandbox, "/invoices/999999.json")
    assert (missing.status_code, missing.json()) == (404, {"code": "error", "message": "Not found"})
    missing = sg_get(sandbox, "/deals/999999.json")
    assert (missing.status_code, missing.json()) == (404, {"status": "error", "message": "Nie znaleziono"})

    url = f"{sandbox.fakturownia_url}/invoices.json"
    invalid = requests.post(url, json={"api_token": sandbox.fakturownia_token, "invoice": {"kind": "vat"}}, timeout=10)
    assert invalid.status_code == 422
    assert invalid.json() == {"code": "error", "message": {"buyer_name": ["- nie może być puste"]}}
    invalid = requests.post(
        f"{sandbox.fakturownia_url}/clients.json", json={"api_token": sandbox.fakturownia_token, "client": {}}
    )
    assert invalid.json() == {"code": "error", "message": {"name": ["- nie może być puste"]}}

    invalid = sg_post(sandbox, "/clients.json", {"client": {"email": "a@b.pl"}})
    assert invalid.status_code == 422
    assert invalid.json() == {"status": "error", "message": {"name": ["nie może być puste"]}}
    invalid = sg_post(sandbox, "/deals.json", {"deal": {"name": " ", "price": "-1", "client_id": 999999}})
    assert invalid.status_code == 422
    assert set(invalid.json()["message"]) == {"name", "price", "client_id"}
    assert invalid.json()["message"]["client_id"] == ["nie istnieje"]
    for bad_price in ("abc", 1e12):
        assert "price" in sg_post(sandbox, "/deals.json", {"deal": {"name": "x", "price": bad_price}}).json()["message"]
    bad_department = sg_post(sandbox, "/deals.json", {"deal": {"name": "x", "department_id": 11}})
    assert bad_department.json()["message"] == {"department_id": ["nie istnieje"]}
    assert sandbox.dump("sugester")["deals"] == []


def test_writes_with_token_in_body_and_updated_at_bumps(sandbox: SandboxProcess) -> None:
    token = sandbox.fakturownia_token
    client = fk_get(sandbox, "/clients/3.json").json()
    created = requests.post(
        f"{sandbox.fakturownia_url}/invoices.json",
        json={
            "api_token": token,
            "invoice": {
                "kind": "vat",
                "client_id": client["id"],
                "number": None,
                "positions": [{"name": "Usługa", "quantity": 2, "tax": 23, "price_net": "100.5"}],
            },
        },
        timeout=10,
    )
    assert created.status_code == 201
    invoice = created.json()
    assert invoice["buyer_name"] == client["name"] and invoice["client_id"] == client["id"]
    assert (invoice["price_net"], invoice["price_tax"], invoice["price_gross"]) == ("201.0", "46.23", "247.23")
    assert invoice["number"].startswith("FV ") and invoice["positions"][0]["total_price_gross"] == "247.23"
    assert TIMESTAMP.match(invoice["created_at"]) and invoice["view_url"].endswith(invoice["token"])

    put = requests.put(
        f"{sandbox.fakturownia_url}/invoices/{invoice['id']}.json",
        json={"api_token": token, "invoice": {"description": "Zmieniony opis"}},
        timeout=10,
    )
    assert put.status_code == 200 and put.json()["description"] == "Zmieniony opis"
    assert instant(put.json()["updated_at"]) > instant(invoice["updated_at"])
    newest = fk_get(sandbox, "/invoices.json", period="all", order="updated_at.desc", per_page=1).json()
    assert newest[0]["id"] == invoice["id"]

    old = fk_get(sandbox, "/clients/5.json").json()
    changed = requests.put(
        f"{sandbox.fakturownia_url}/clients/5.json",
        json={"api_token": token, "client": {"email": "nowy@przyklad.pl", "external_id": 77}},
        timeout=10,
    ).json()
    assert changed["email"] == "nowy@przyklad.pl" and changed["external_id"] == "77"
    assert instant(changed["updated_at"]) > instant(old["updated_at"])
    assert [c["id"] for c in fk_get(sandbox, "/clients.json", external_id="77").json()] == [5]

    deleted = requests.delete(f"{sandbox.fakturownia_url}/invoices/{invoice['id']}.json", params={"api_token": token})
    assert deleted.json() == {"code": "success", "message": "Usunięto"}
    assert fk_get(sandbox, f"/invoices/{invoice['id']}.json").status_code == 404


def test_crm_external_ids_merge_and_deal_price_is_a_string(sandbox: SandboxProcess) -> None:
    deal = sg_post(
        sandbox,
        "/deals.json",
        {"deal": {"name": "FV 1/11/2026", "price": 1234.5, "client_id": 2, "external_ids": {"fk_invoice_id": 17}}},
    )
    assert deal.status_code == 201
    body = deal.json()
    assert body["price"] == "1234.50" and body["external_ids"] == {"fk_invoice_id": "17"}
    updated = requests.put(
        f"{sandbox.sugester_url}/app/deals/{body['id']}.json",
        json={"api_token": sandbox.sugester_token, "deal": {"external_ids": {"other": "x"}, "status_id": 3}},
        timeout=10,
    ).json()
    assert updated["external_ids"] == {"fk_invoice_id": "17", "other": "x"} and updated["status_id"] == 3
    assert instant(updated["updated_at"]) > instant(body["updated_at"])
    client = requests.put(
        f"{sandbox.sugester_url}/app/clients/2.json",
        json={"api_token": sandbox.sugester_token, "client": {"external_ids": {"fakturownia_client_id": "9"}}},
        timeout=10,
    ).json()
    assert client["external_ids"] == {"fakturownia_client_id": "9"}
    assert [d["id"] for d in sg_get(sandbox, "/deals.json").json()] == [body["id"]]
    stats = sandbox.stats("sugester")
    assert stats["writes"] == {
        "POST /app/deals.json": 1,
        "PUT /app/deals/{id}.json": 1,
        "PUT /app/clients/{id}.json": 1,
    }
    assert stats["by_status"]["201"] == 1


# -- faults --------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(sandbox: SandboxProcess) -> None:
    sandbox.set_faults("sugester", rpm=60)
    statuses = [sg_get(sandbox, "/clients.json") for _ in range(4)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and statuses[0].status_code == 200
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["message"] == "Rate limit exceeded"
    assert sandbox.stats("sugester")["faults"]["rate_limited"] == len(limited)
    assert fk_get(sandbox, "/clients.json").status_code == 200  # limits are per API
    assert sandbox.set_faults(rpm=0) == {
        api: {
            "latency_ms": 0,
            "rpm": 0,
            "error_rate": 0.0,
            "drop_rate": 0.0,
            "error_body_rate": 0.0,
            "rate_limit_rate": 0.0,
        }
        for api in ("fakturownia", "sugester")
    }


def test_error_rate_answers_5xx_and_writes_nothing(sandbox: SandboxProcess) -> None:
    sandbox.set_faults(error_rate=1.0)
    answers = [sg_post(sandbox, "/deals.json", {"deal": {"name": f"Deal {n}"}}) for n in range(6)]
    assert {r.status_code for r in answers} <= {500, 502, 503}
    assert any(r.status_code == 500 and r.json()["message"] == "Internal Server Error" for r in answers) or any(
        "<html" in r.text for r in answers
    )
    sandbox.set_faults(error_rate=0)
    assert sandbox.dump("sugester")["deals"] == []
    assert sandbox.stats("sugester")["faults"]["error"] == 6
    assert sandbox.stats("sugester")["writes"] == {}


def test_dropped_connection_still_applies_the_write(sandbox: SandboxProcess) -> None:
    sandbox.set_faults("sugester", drop_rate=1.0)
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        sg_post(sandbox, "/deals.json", {"deal": {"name": "Zapisana mimo zerwania"}}).json()
    sandbox.set_faults("sugester", drop_rate=0)
    assert [d["name"] for d in sandbox.dump("sugester")["deals"]] == ["Zapisana mimo zerwania"]
    stats = sandbox.stats("sugester")
    assert stats["faults"]["drop"] == 1 and stats["writes"] == {"POST /app/deals.json": 1}


def test_error_body_rate_answers_200_with_an_error(sandbox: SandboxProcess) -> None:
    sandbox.set_faults(error_body_rate=1.0)
    fk = fk_get(sandbox, "/invoices.json")
    assert fk.status_code == 200 and fk.json() == {"code": "error", "message": "Wewnętrzny błąd - spróbuj ponownie"}
    sg = sg_post(sandbox, "/deals.json", {"deal": {"name": "x"}})
    assert sg.status_code == 200 and sg.json()["status"] == "error"
    assert requests.get(f"{sandbox.sugester_url}/_sandbox/health", timeout=5).json() == {"ok": True}
    sandbox.set_faults(error_body_rate=0)
    assert sandbox.dump("sugester")["deals"] == []


def test_latency_delays_requests_concurrently(sandbox: SandboxProcess) -> None:
    sandbox.set_faults("fakturownia", latency_ms=300)
    started = monotonic()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: fk_get(sandbox, "/departments.json").status_code, range(4)))
    elapsed = monotonic() - started
    assert codes == [200] * 4 and 0.3 <= elapsed < 1.0
    assert sandbox.stats("fakturownia")["faults"]["latency"] == 4


def test_stats_count_api_requests_only(sandbox: SandboxProcess) -> None:
    sandbox.reset_stats()
    fk_get(sandbox, "/invoices/1.json")
    fk_get(sandbox, "/invoices/2.json")
    sandbox.dump("fakturownia")
    stats = sandbox.stats("fakturownia")
    assert stats["requests"] == 2 and stats["by_endpoint"] == {"GET /invoices/{id}.json": 2}


# -- persistence ---------------------------------------------------------------


def test_state_file_survives_a_restart(tmp_path) -> None:
    state = tmp_path / "state.json"
    with SandboxProcess(seed=3, state_file=state, **SMALL) as first:
        deal = sg_post(first, "/deals.json", {"deal": {"name": "Trwały interes", "price": "10"}}).json()
        assert first.stop() == 0
    assert state.exists()
    with SandboxProcess(seed=99, state_file=state, clients=1, invoices=1, crm_clients=1) as second:
        deals = second.dump("sugester")["deals"]
        assert [(d["id"], d["name"], d["price"]) for d in deals] == [(deal["id"], "Trwały interes", "10.00")]
        assert len(second.dump("fakturownia")["invoices"]) == SMALL["invoices"]
        again = sg_post(second, "/deals.json", {"deal": {"name": "Drugi"}}).json()
        assert again["id"] == deal["id"] + 1
        second.save()
    assert "Drugi" in state.read_text(encoding="utf-8")


def test_sigint_also_saves_and_stops(tmp_path) -> None:
    state = tmp_path / "s.json"
    with SandboxProcess(seed=1, clients=5, invoices=5, crm_clients=5, state_file=state) as sandbox:
        assert sandbox.pid is not None
        os.kill(sandbox.pid, signal.SIGINT)
        deadline = monotonic() + 20
        while sandbox.running and monotonic() < deadline:
            sleep(0.05)
        assert not sandbox.running
        assert sandbox.stop() == 0
    assert json.loads(state.read_text(encoding="utf-8"))["sugester"]["deals"] == []
