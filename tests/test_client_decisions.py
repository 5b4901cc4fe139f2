"""One client decision: the per-record look-up (`CrmClientIndex`) and the bulk matcher agree on every record.

Random record sets over small key alphabets, so that NIPs, e-mails, external-id hints, links and junk tax ids
collide often, go through both entry points; every record of both sides must get the same decision,
refusals included, with pairs a person told apart ("different" on the review list) fed to both. The matcher's
told-apart rule reads a person's decisions as `ClientBases.told_apart` does. Plus the creation rule
(`holds_back`) and the anonymous buyer key.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakturownia_sync.bulk_matching import crm_frame, fakturownia_frame, match_client_bases
from fakturownia_sync.client_bases import ClientBases
from fakturownia_sync.client_decisions import WALK_IN_BUYER_KEY, anonymous_buyer_key, decision_of, holds_back
from fakturownia_sync.client_keys import email_key, tax_key
from fakturownia_sync.client_matching import BUYER_ID, CRM, FAKTUROWNIA, CrmClientIndex
from fakturownia_sync.kept_apart import told_apart_pairs
from fakturownia_sync.state import ClientLink

F_IDS = list(range(1, 9))
C_IDS = list(range(101, 109))
TAX_NOS = [None, "", "5261040828", "PL 526-104-08-28", "7251801126", "0000000000", "1111111111", "brak"]
TAX_NOS += ["5261040829", "GB980780684", "DE136695976", "CHE-116.281.710 MWST"]
EMAILS = [None, "", "a@x.pl", " A@X.pl", "b@y.pl", "biuro@ksiegowa.pl", "n/a"]
NAMES = ["Alfa Sp. z o.o.", "ALFA spółka z ograniczoną odpowiedzialnością", "Beta S.A.", "Gamma Transport", ""]
POST_CODES = [None, "00-001", "99-999"]


def _common(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "tax_no": draw(st.sampled_from(TAX_NOS)),
        "email": draw(st.sampled_from(EMAILS)),
        "name": draw(st.sampled_from(NAMES)),
        "post_code": draw(st.sampled_from(POST_CODES)),
    }


@st.composite
def bases(draw: st.DrawFn) -> tuple[list[dict], list[dict], list[tuple[int, int]], list[tuple[int, int]]]:
    f_ids = draw(st.lists(st.sampled_from(F_IDS), unique=True, max_size=len(F_IDS)))
    c_ids = draw(st.lists(st.sampled_from(C_IDS), unique=True, max_size=len(C_IDS)))
    fakturownia = [
        {"id": i, "external_id": draw(st.sampled_from([None, "", "x1", *map(str, C_IDS)])), **_common(draw)}
        for i in f_ids
    ]
    crm = []
    for i in c_ids:
        hint = draw(st.sampled_from([None, *map(str, F_IDS)]))
        crm.append({"id": i, "external_ids": {"fakturownia_client_id": hint} if hint else {}, **_common(draw)})
    pairs = draw(st.lists(st.tuples(st.sampled_from(f_ids or [0]), st.sampled_from(c_ids or [0])), max_size=3))
    links, used_f, used_c = [], set(), set()
    for f, c in pairs:
        if f and c and f not in used_f and c not in used_c:
            links.append((f, c))
            used_f.add(f)
            used_c.add(c)
    apart = draw(st.lists(st.tuples(st.sampled_from(f_ids or [1]), st.sampled_from(c_ids or [101])), max_size=3))
    return fakturownia, crm, links, apart


def _outcomes(match, fakturownia: list[dict], crm: list[dict], links: list[tuple[int, int]]) -> dict:
    partners = {FAKTUROWNIA: dict(links), CRM: {c: f for f, c in links}}
    decided = {}
    for side, records in ((FAKTUROWNIA, fakturownia), (CRM, crm)):
        for record in records:
            decided[(side, record["id"])] = decision_of(match, side, record["id"], partners[side]).outcome
    return decided


def _bulk_decisions(fakturownia: list[dict], crm: list[dict], links: list[tuple[int, int]], apart=()) -> dict:
    match = match_client_bases(fakturownia_frame(fakturownia), crm_frame(crm), links, apart)
    return _outcomes(match, fakturownia, crm, links)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bases())
def test_per_record_lookup_and_bulk_matcher_decide_every_record_alike(data) -> None:
    fakturownia, crm, links, apart = data
    expected = _bulk_decisions(fakturownia, crm, links, apart)
    index = CrmClientIndex(crm, fakturownia, links, apart)
    for (side, record_id), outcome in expected.items():
        assert index.decide(side, record_id).outcome == outcome, (side, record_id)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bases())
def test_the_client_sync_tells_apart_the_records_the_matcher_keeps_apart(data) -> None:
    """`ClientBases.told_apart` (per record: creation, resemblance notes, the review list) names exactly the
    records of the pairs `kept_apart.told_apart_pairs` gives the matcher: one reading of a person's decision."""
    _fakturownia, _crm, links, apart = data
    bases = ClientBases(store=None, apart=set(apart))  # type: ignore[arg-type]  # told_apart reads links only
    for f, c in links:
        bases.set_link(ClientLink(f, c, "nip", None))
    pairs = told_apart_pairs(links, apart)
    ids_f = {f for f, _ in pairs} | {f for f, _ in links} | {f for f, _ in apart}
    ids_c = {c for _, c in pairs} | {c for _, c in links} | {c for _, c in apart}
    for f in ids_f:
        assert bases.told_apart("fakturownia", f) == {c for g, c in pairs if g == f}, f
    for c in ids_c:
        assert bases.told_apart("crm", c) == {f for f, d in pairs if d == c}, c


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bases(), st.builds(dict, tax_no=st.sampled_from(TAX_NOS), email=st.sampled_from(EMAILS)))
def test_a_buyer_without_a_card_is_decided_as_one_more_record_of_the_base(data, keys) -> None:
    fakturownia, crm, links, _apart = data
    buyer = {"name": "Delta Serwis", "post_code": "00-001", **keys}
    index = CrmClientIndex(crm, fakturownia, links)
    decision = index.match_buyer(buyer)
    tax, email = tax_key(buyer["tax_no"]), email_key(buyer["email"])
    named_by_card = [
        r
        for r in fakturownia
        if (tax is not None and tax_key(r["tax_no"]) == tax) or (email is not None and email_key(r["email"]) == email)
    ]
    if named_by_card:
        return  # the card's own decision applies (checked in the test below)
    expected = _bulk_decisions([*fakturownia, {**buyer, "id": BUYER_ID}], crm, links)[(FAKTUROWNIA, BUYER_ID)]
    assert decision.outcome == expected


def test_a_buyer_with_a_cards_nip_gets_that_cards_client_even_when_it_is_linked() -> None:
    fakturownia = [{"id": 1, "tax_no": "5261040828", "email": None, "name": "Alfa"}]
    crm = [{"id": 101, "tax_no": "PL5261040828", "email": None, "name": "Alfa"}]
    index = CrmClientIndex(crm, fakturownia, [(1, 101)])
    assert index.match_buyer({"name": "Alfa", "tax_no": "526-104-08-28", "email": None}).partner_id == 101


def test_a_buyer_never_lands_on_a_crm_client_linked_to_another_company() -> None:
    """Issue 7: the per-record path ignored links for a buyer without a card."""
    fakturownia = [{"id": 1, "tax_no": "7251801126", "email": None, "name": "Beta"}]
    crm = [{"id": 101, "tax_no": "5261040828", "email": None, "name": "Alfa"}]
    index = CrmClientIndex(crm, fakturownia, [(1, 101)])
    decision = index.match_buyer({"name": "Alfa", "tax_no": "5261040828", "email": None})
    assert decision.refused and decision.reason == "duplicate_of_linked" and decision.partner_id is None


def test_an_external_id_hint_contradicted_by_the_nip_does_not_link() -> None:
    """Issue 8 item 2: a numeric `external_id` equal to an unrelated CRM client's id."""
    fakturownia = [{"id": 1, "external_id": "101", "tax_no": "7251801126", "email": None, "name": "Beta"}]
    crm = [{"id": 101, "tax_no": "5261040828", "email": None, "name": "Alfa"}]
    assert CrmClientIndex(crm, fakturownia).match_card(1).create


def test_two_buyers_with_nip_zeros_are_never_one_client() -> None:
    crm = [{"id": 101, "tax_no": "0000000000", "email": None, "name": "Alfa"}]
    index = CrmClientIndex(crm)
    assert index.match_buyer({"name": "Beta", "tax_no": "0000000000", "email": "beta@b.pl"}).create


def test_a_resemblance_holds_back_only_what_no_strong_key_tells_apart() -> None:
    record = {"name": "Alfa", "tax_no": "5261040828", "email": "a@x.pl"}
    assert not holds_back(record, [{"name": "Alfa", "tax_no": "7251801126", "email": "a@x.pl"}])
    assert not holds_back(record, [{"name": "Alfa", "tax_no": "brak", "email": "b@y.pl"}])
    assert holds_back(record, [{"name": "Alfa", "tax_no": None, "email": None}])
    assert holds_back(record, [{"name": "Alfa", "tax_no": "0000000000", "email": " A@X.PL"}])


def test_anonymous_buyer_key_folds_spelling_and_names_walk_in_buyers() -> None:
    a = anonymous_buyer_key("Jan Kowalski", "ul. Długa 5", "00-950", "Warszawa")
    assert a == anonymous_buyer_key("JAN  KOWALSKI", "ul. dluga 5", "00950", "WARSZAWA")
    assert a != anonymous_buyer_key("Jan Kowalski", "ul. Długa 7", "00-950", "Warszawa")
    assert anonymous_buyer_key("", "", "", "") == WALK_IN_BUYER_KEY
