"""A person's decisions on the client review list, applied by the next client sync, against the sandbox over HTTP:
link, different, ignore; refusals (linked elsewhere, deleted while waiting); a later decision superseding an
earlier one; a decision acted on by a run that died before marking it; two overlapping runs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fakturownia_sync.state import StateStore
from fakturownia_sync.state.schema import review_decisions
from fakturownia_sync.sugester_client import external_ids_of
from sandbox.nip import generate as generate_nip
from sandbox.process import SandboxProcess
from tests.clients_harness import (
    clients_of,
    copies_per_source,
    delete_clients,
    make_clients_sync,
    post_client,
    writes,
)
from tests.sync_harness import ROOT


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    state_file = tmp_path / "sandbox.json"  # lets a test delete clients (`delete_clients`)
    with SandboxProcess(seed=5, clients=0, invoices=0, crm_clients=0, state_file=state_file) as running:
        yield running


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def held_pair(sandbox: SandboxProcess, name: str, f_extra: dict | None = None, c_extra: dict | None = None):
    """A client in each system with the same name at the same place and no NIP or e-mail: nothing tells them
    apart, so the sync holds both for review (`possible_duplicate`) until a person decides."""
    place = {"name": name, "post_code": "00-950", "city": "Warszawa"}
    f_client = post_client(sandbox, "fakturownia", {**place, **(f_extra or {})})
    c_client = post_client(sandbox, "sugester", {**place, **(c_extra or {})})
    return int(f_client["id"]), int(c_client["id"])


def open_entries(store: StateStore) -> dict[str, dict[str, Any]]:
    return {row["subject"]: row for row in store.open_client_review()}


def decision_row(store: StateStore, decision_id: int) -> dict[str, Any]:
    return next(row for row in store.review_decision_audit() if row["id"] == decision_id)


def run(sandbox: SandboxProcess, store: StateStore, n: int) -> dict[str, Any]:
    return make_clients_sync(sandbox, store, owner=f"tests/decisions-{n}").run()


def test_link_joins_the_pair_merges_it_at_once_and_is_applied_once(sandbox, sqlite_store) -> None:
    f_id, c_id = held_pair(
        sandbox, "Piekarnia Zielony Kłos", f_extra={"phone": "+48 600 100 200"}, c_extra={"street": "ul. Polna 3"}
    )
    first = run(sandbox, sqlite_store, 1)
    entry = open_entries(sqlite_store)[f"fakturownia:{f_id}"]
    assert (entry["reason"], entry["crm_client_id"]) == ("possible_duplicate", c_id)
    assert first["created_in_crm"] == first["created_in_fakturownia"] == 0  # held, as the rules say
    decision = sqlite_store.record_review_decision(f"fakturownia:{f_id}", "link", "anna", f_id, c_id)

    second = run(sandbox, sqlite_store, 2)
    link = sqlite_store.client_link(f_id)
    assert link is not None and (link.crm_client_id, link.evidence) == (c_id, "person")
    assert (second["review_decisions_applied"], second["review_decisions_refused"]) == (1, 0)
    assert second["linked_by_evidence"] == {"person": 1}
    assert second["created_in_crm"] == second["created_in_fakturownia"] == 0
    crm_client, f_client = clients_of(sandbox, "sugester")[c_id], clients_of(sandbox, "fakturownia")[f_id]
    assert crm_client["phone"] == "+48 600 100 200" and f_client["street"] == "ul. Polna 3"  # merged at once
    assert external_ids_of(crm_client)["fakturownia_client_id"] == str(f_id)
    assert not {f"fakturownia:{f_id}", f"crm:{c_id}"} & set(open_entries(sqlite_store))
    applied = decision_row(sqlite_store, decision)
    assert applied["applied_at"] is not None
    assert applied["outcome"].startswith(f"Linked Fakturownia client {f_id} (Piekarnia Zielony Kłos) and CRM client")

    sandbox.reset_stats()
    third = run(sandbox, sqlite_store, 3)
    assert writes(sandbox) == {} and third["review_decisions_applied"] == 0
    assert decision_row(sqlite_store, decision) == applied


def test_different_creates_each_on_the_other_side_and_never_holds_them_again(sandbox, sqlite_store) -> None:
    f_id, c_id = held_pair(sandbox, "Auto Serwis Nowak")
    run(sandbox, sqlite_store, 1)
    assert {f"fakturownia:{f_id}", f"crm:{c_id}"} <= set(open_entries(sqlite_store))
    decision = sqlite_store.record_review_decision(f"crm:{c_id}", "different", "jan", f_id, c_id)

    second = run(sandbox, sqlite_store, 2)
    assert (second["created_in_crm"], second["created_in_fakturownia"]) == (1, 1)
    assert second["review_decisions_applied"] == 1
    f_link = sqlite_store.client_link(f_id)
    c_link = sqlite_store.client_link_of_crm(c_id)
    assert f_link is not None and c_link is not None
    assert f_link.crm_client_id != c_id and c_link.fakturownia_client_id != f_id  # two companies, each copied
    assert (f_link.evidence, c_link.evidence) == ("created", "created")
    crm_copies, fakturownia_copies = copies_per_source(sandbox)
    assert crm_copies == {str(f_id): 1} and fakturownia_copies == {str(c_id): 1}
    outcome = decision_row(sqlite_store, decision)["outcome"]
    assert f"Fakturownia client {f_id} was created in the CRM as client {f_link.crm_client_id}" in outcome
    assert f"CRM client {c_id} was created in Fakturownia as client {c_link.fakturownia_client_id}" in outcome
    # neither the pair nor their copies (same name, same place) are held or noted as look-alikes any more
    subjects = {f"fakturownia:{f_id}", f"crm:{c_id}", f"fakturownia:{c_link.fakturownia_client_id}"}
    assert not subjects & set(open_entries(sqlite_store))

    sandbox.reset_stats()
    third = run(sandbox, sqlite_store, 3)
    assert writes(sandbox) == {} and (third["review_opened"], third["review_decisions_applied"]) == (0, 0)


def test_different_releases_a_record_the_matcher_held_over_a_shared_nip(sandbox, sqlite_store) -> None:
    """A CRM client whose NIP is on a Fakturownia client the sync itself made for another CRM client: held as
    `duplicate_of_linked`. Told apart, it is created in Fakturownia although the sync's own claim on that NIP
    names the other company's record."""
    nip = generate_nip(random.Random(11))
    c_first = post_client(sandbox, "sugester", {"name": "Tartak Dąb Sp. z o.o.", "tax_no": nip})["id"]
    run(sandbox, sqlite_store, 1)
    f_copy = sqlite_store.client_link_of_crm(c_first).fakturownia_client_id  # created by the sync, under a claim
    c_second = post_client(sandbox, "sugester", {"name": "Dąb Oddział Radom", "tax_no": nip})["id"]
    run(sandbox, sqlite_store, 2)
    entry = open_entries(sqlite_store)[f"crm:{c_second}"]
    assert (entry["reason"], entry["suggestions"][0]["id"]) == ("duplicate_of_linked", f_copy)
    decision = sqlite_store.record_review_decision(f"crm:{c_second}", "different", "jan", f_copy, c_second)

    summary = run(sandbox, sqlite_store, 3)
    link = sqlite_store.client_link_of_crm(c_second)
    assert link is not None and link.fakturownia_client_id not in (f_copy, None) and link.evidence == "created"
    assert summary["created_in_fakturownia"] == 1 and f"crm:{c_second}" not in open_entries(sqlite_store)
    assert clients_of(sandbox, "fakturownia")[link.fakturownia_client_id]["tax_no"] == nip
    assert sqlite_store.client_link(f_copy).crm_client_id == c_first  # the other company keeps its link
    outcome = decision_row(sqlite_store, decision)["outcome"]
    assert f"CRM client {c_second} was created in Fakturownia as client {link.fakturownia_client_id}" in outcome
    assert f"Fakturownia client {f_copy} is linked to CRM client {c_first}" in outcome

    sandbox.reset_stats()
    run(sandbox, sqlite_store, 4)
    assert writes(sandbox) == {} and f"crm:{c_second}" not in open_entries(sqlite_store)


def test_different_on_each_candidate_shown_works_through_an_ambiguous_entry(sandbox, sqlite_store) -> None:
    """One e-mail on a Fakturownia client and on two CRM clients: the entry shows one candidate at a time."""
    shared = {"email": "biuro@rachunkowa-sowa.pl", "post_code": "30-001", "city": "Kraków"}
    f_id = post_client(sandbox, "fakturownia", {"name": "Sowa Rachunkowość", **shared})["id"]
    c_one = post_client(sandbox, "sugester", {"name": "Sowa Doradztwo", **shared})["id"]
    c_two = post_client(sandbox, "sugester", {"name": "Sowa Kadry", **shared})["id"]
    run(sandbox, sqlite_store, 1)
    entry = open_entries(sqlite_store)[f"fakturownia:{f_id}"]
    assert (entry["reason"], entry["crm_client_id"]) == ("ambiguous_email", c_one)
    sqlite_store.record_review_decision(entry["subject"], "different", "ola", f_id, c_one)

    run(sandbox, sqlite_store, 2)
    entry = open_entries(sqlite_store)[f"fakturownia:{f_id}"]
    assert (entry["reason"], entry["crm_client_id"]) == ("ambiguous_email", c_two)  # the next candidate shown
    assert sqlite_store.client_link(f_id) is None
    sqlite_store.record_review_decision(entry["subject"], "different", "ola", f_id, c_two)

    run(sandbox, sqlite_store, 3)
    link = sqlite_store.client_link(f_id)
    assert link is not None and link.crm_client_id not in (c_one, c_two) and link.evidence == "created"
    # Told apart from the first, each CRM client is a company of its own: the first was copied at once, and the
    # second is still weighed against the first's copy, which nobody has told it apart from.
    c_one_copy = sqlite_store.client_link_of_crm(c_one).fakturownia_client_id
    entry = open_entries(sqlite_store)[f"crm:{c_two}"]
    assert (entry["reason"], entry["fakturownia_client_id"]) == ("ambiguous_email", c_one_copy)
    sqlite_store.record_review_decision(entry["subject"], "different", "ola", c_one_copy, c_two)

    run(sandbox, sqlite_store, 4)
    assert sqlite_store.client_link_of_crm(c_two).evidence == "created"
    assert not {f"fakturownia:{f_id}", f"crm:{c_one}", f"crm:{c_two}"} & set(open_entries(sqlite_store))
    sandbox.reset_stats()
    run(sandbox, sqlite_store, 5)
    assert writes(sandbox) == {}


def test_ignore_closes_the_entry_until_a_different_finding(sandbox, store: StateStore) -> None:
    """On SQLite and on PostgreSQL: when the ignore was applied is compared with when the entry was last seen."""
    f_id, c_id = held_pair(sandbox, "Kwiaciarnia Róża")
    run(sandbox, store, 1)
    decision = store.record_review_decision(f"fakturownia:{f_id}", "ignore", "anna", f_id, c_id)

    second = run(sandbox, store, 2)
    assert second["review_decisions_applied"] == 1
    still_open = open_entries(store)
    assert f"fakturownia:{f_id}" not in still_open and f"crm:{c_id}" in still_open  # only the entry decided on
    assert store.client_link(f_id) is None and second["created_in_crm"] == 0  # nothing written
    assert "stays closed while later runs find the same evidence" in decision_row(store, decision)["outcome"]

    third = run(sandbox, store, 3)
    assert f"fakturownia:{f_id}" not in open_entries(store) and third["review_opened"] == 0

    other = post_client(sandbox, "sugester", {"name": "Kwiaciarnia Róża", "post_code": "00-950", "city": "Warszawa"})
    run(sandbox, store, 4)  # a second look-alike: a new finding for the ignored record
    reopened = open_entries(store)[f"fakturownia:{f_id}"]
    assert other["id"] in {suggestion["id"] for suggestion in reopened["suggestions"]}


def test_link_is_refused_when_either_record_is_linked_to_another(sandbox, sqlite_store) -> None:
    nip = generate_nip(random.Random(7))
    f_linked = post_client(sandbox, "fakturownia", {"name": "Hurtownia Stal", "tax_no": nip})["id"]
    c_linked = post_client(sandbox, "sugester", {"name": "Hurtownia Stal SA", "tax_no": nip})["id"]
    f_id, c_id = held_pair(sandbox, "Warsztat Lis")
    run(sandbox, sqlite_store, 1)
    assert sqlite_store.client_link(f_linked).crm_client_id == c_linked  # linked by the NIP
    first = sqlite_store.record_review_decision(f"fakturownia:{f_id}", "link", "anna", f_id, c_linked)
    second = sqlite_store.record_review_decision(f"crm:{c_id}", "link", "anna", f_linked, c_id)

    summary = run(sandbox, sqlite_store, 2)
    assert (summary["review_decisions_applied"], summary["review_decisions_refused"]) == (0, 2)
    assert sqlite_store.client_link(f_linked).crm_client_id == c_linked and sqlite_store.client_link(f_id) is None
    assert decision_row(sqlite_store, first)["outcome"] == (
        f"Refused: CRM client {c_linked} is already linked to Fakturownia client {f_linked}, and a client is linked "
        "to one client only."
    )
    assert decision_row(sqlite_store, second)["outcome"].startswith(
        f"Refused: Fakturownia client {f_linked} is already linked to CRM client {c_linked}"
    )
    assert {f"fakturownia:{f_id}", f"crm:{c_id}"} <= set(open_entries(sqlite_store))  # still to decide


def test_link_is_refused_for_records_deleted_while_the_decision_waited(sandbox, sqlite_store) -> None:
    f_gone, c_kept = held_pair(sandbox, "Sklep Mleczny Ala")
    f_kept, c_gone = held_pair(sandbox, "Studio Foto Ewa")
    run(sandbox, sqlite_store, 1)
    first = sqlite_store.record_review_decision(f"fakturownia:{f_gone}", "link", "anna", f_gone, c_kept)
    second = sqlite_store.record_review_decision(f"fakturownia:{f_kept}", "link", "anna", f_kept, c_gone)
    delete_clients(sandbox, fakturownia=[f_gone], crm=[c_gone])

    summary = run(sandbox, sqlite_store, 2)  # incremental: the mirror still holds the deleted Fakturownia client
    assert (summary["review_decisions_applied"], summary["review_decisions_refused"]) == (0, 2)
    links = sqlite_store.all_client_links()
    assert all(link.fakturownia_client_id != f_gone and link.crm_client_id != c_gone for link in links)
    assert decision_row(sqlite_store, first)["outcome"] == (
        f"Refused: Fakturownia client {f_gone} no longer exists (deleted while the decision waited); nothing was "
        "linked."
    )
    assert decision_row(sqlite_store, second)["outcome"] == (
        f"Refused: CRM client {c_gone} no longer exists (deleted while the decision waited); nothing was linked."
    )
    assert f_gone not in {int(r["id"]) for r in sqlite_store.fakturownia_clients()}  # never decided on again
    # the records left alone are no longer held by the deleted look-alikes: they are copied as usual
    assert sqlite_store.client_link(f_kept) is not None and sqlite_store.client_link_of_crm(c_kept) is not None


def test_a_later_decision_supersedes_an_earlier_unapplied_one(sandbox, sqlite_store) -> None:
    f_id, c_id = held_pair(sandbox, "Pralnia Biała")
    f_other, c_other = held_pair(sandbox, "Pralnia Czysta")
    run(sandbox, sqlite_store, 1)
    subject = f"fakturownia:{f_id}"
    early = sqlite_store.record_review_decision(subject, "link", "anna", f_id, c_id)
    late = sqlite_store.record_review_decision(subject, "ignore", "jan", f_id, c_id)
    sqlite_store.record_review_decision(f"crm:{c_other}", "different", "anna", f_other, c_other)
    sqlite_store.record_review_decision(f"crm:{c_other}", "ignore", "anna", f_other, c_other)

    summary = run(sandbox, sqlite_store, 2)
    assert (summary["review_decisions_applied"], summary["review_decisions_superseded"]) == (2, 2)
    assert sqlite_store.client_link(f_id) is None  # the link was never made
    later = run(sandbox, sqlite_store, 3)  # nor does the superseded "different" act on later runs
    assert summary["created_in_crm"] == later["created_in_crm"] == 0 and sqlite_store.client_link(f_other) is None
    assert decision_row(sqlite_store, early)["outcome"] == (
        f"Superseded by decision #{late} (ignore, by jan) before it was applied; nothing was done."
    )
    assert decision_row(sqlite_store, late)["outcome"].startswith("Ignored:")
    assert sqlite_store.pending_review_decisions() == []


def test_a_decision_acted_on_by_a_run_that_died_before_marking_it_is_not_redone(sandbox, sqlite_store) -> None:
    f_link, c_link = held_pair(sandbox, "Drukarnia Punkt")
    f_apart, c_apart = held_pair(sandbox, "Cukiernia Wanilia")
    run(sandbox, sqlite_store, 1)
    linked = sqlite_store.record_review_decision(f"fakturownia:{f_link}", "link", "anna", f_link, c_link)
    apart = sqlite_store.record_review_decision(f"fakturownia:{f_apart}", "different", "anna", f_apart, c_apart)
    run(sandbox, sqlite_store, 2)
    # What a run that died after acting and before marking leaves behind: the link and the copies are there, the
    # decisions are pending again.
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.update(review_decisions).values(applied_at=None, outcome=None))
    links_before = sqlite_store.all_client_links()

    sandbox.reset_stats()
    summary = run(sandbox, sqlite_store, 3)
    assert writes(sandbox) == {}  # nothing linked, created or written twice
    assert sqlite_store.all_client_links() == links_before
    assert summary["review_decisions_applied"] == 2 and sqlite_store.pending_review_decisions() == []
    assert "are linked (evidence: person)" in decision_row(sqlite_store, linked)["outcome"]
    copy = sqlite_store.client_link(f_apart).crm_client_id
    outcome = decision_row(sqlite_store, apart)["outcome"]
    assert f"Fakturownia client {f_apart} is linked to CRM client {copy}" in outcome
    crm_copies, fakturownia_copies = copies_per_source(sandbox)
    assert max(crm_copies.values()) == 1 and max(fakturownia_copies.values()) == 1


def test_overlapping_runs_apply_each_decision_once(tmp_path: Path, postgres_url: str) -> None:
    """Two client syncs in two processes on one PostgreSQL state DB, started together over a slow sandbox, then
    a third after them."""
    with SandboxProcess(seed=6, clients=0, invoices=0, crm_clients=0) as sandbox:
        store = StateStore.open(postgres_url)
        try:
            f_link, c_link = held_pair(sandbox, "Tartak Sosna")
            f_apart, c_apart = held_pair(sandbox, "Zakład Szklarski Lustro")
            make_clients_sync(sandbox, store).run()
            store.record_review_decision(f"fakturownia:{f_link}", "link", "anna", f_link, c_link)
            store.record_review_decision(f"crm:{c_apart}", "different", "anna", f_apart, c_apart)
            sandbox.set_faults(latency_ms=40)
            start_at = time.time() + 3
            runners = [
                subprocess.Popen(
                    [sys.executable, "-m", "tests.engine_runner", json.dumps(spec(sandbox, postgres_url, n, start_at))],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={**os.environ},
                )
                for n in (1, 2)
            ]
            summaries = []
            for runner in runners:
                out, err = runner.communicate(timeout=240)
                assert runner.returncode == 0, err.decode()[-2000:]
                summaries.append(json.loads(out.decode().strip().splitlines()[-1]))
            # A `different` whose copy the other run was making stays pending until a run sees it settled.
            summaries.append(make_clients_sync(sandbox, store, owner="tests/overlap-3").run())
            assert sum(s["review_decisions_applied"] for s in summaries) == 2
            assert store.pending_review_decisions() == []
            assert store.client_link(f_link).crm_client_id == c_link
            crm_copies, fakturownia_copies = copies_per_source(sandbox)
            assert crm_copies.get(str(f_apart)) == 1 and fakturownia_copies.get(str(c_apart)) == 1
        finally:
            store.close()


def spec(sandbox: SandboxProcess, state_url: str, n: int, start_at: float) -> dict[str, Any]:
    return {
        "fakturownia_url": sandbox.fakturownia_url,
        "fakturownia_token": sandbox.fakturownia_token,
        "sugester_url": sandbox.sugester_url,
        "sugester_token": sandbox.sugester_token,
        "state_url": state_url,
        "owner": f"tests/overlap-{n}",
        "mode": "clients",
        "start_at": start_at,
    }
