"""Users of both systems: the pairing table (login AND e-mail), a CRM that will not list its users, and the
responsible person of deals made from invoices (paired issuers only), against the sandbox over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fakturownia_sync.config import load_config
from fakturownia_sync.connections import ApiEndpoint, connect_crm
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.state import StateStore
from fakturownia_sync.sugester_client import SugesterClient
from fakturownia_sync.transport import RetryPolicy
from fakturownia_sync.users import CrmUsers, User, crm_users, fakturownia_users, pair_users
from sandbox.demo_config import DEMO_CONFIG
from sandbox.process import SandboxProcess
from tests.sync_harness import deals_by_invoice, make_sync

CRM_BASE = "https://acme.sugester.pl"
FAST = RetryPolicy(max_attempts=2, backoff_initial=0.001, backoff_max=0.001, read_timeout=5.0)


def crm() -> SugesterClient:
    return connect_crm(ApiEndpoint(token="tok3n/acme", host=CRM_BASE), policy=FAST)


# The pairing table -----------------------------------------------------------------------------------------


def test_pairing_table_sorts_every_user_into_one_group() -> None:
    ours = [
        User(501, "anna", "Anna@Firma.pl "),  # same login, e-mail differs only in case and space: paired
        User(502, "piotr", "piotr@firma.pl"),  # same e-mail, other login: reported, not paired
        User(503, "kasia", "kasia@firma.pl"),  # same login, other e-mail: reported, not paired
        User(504, "jan", "jan@firma.pl"),  # nobody like him in the CRM
    ]
    theirs = CrmUsers(
        (
            User(1, "anna", "anna@firma.pl"),
            User(2, "piotr.n", "piotr@firma.pl"),
            User(3, "kasia", "k.nowak@firma.pl"),
            User(4, "marek", "marek@firma.pl"),  # only in the CRM
        )
    )
    pairing = pair_users(ours, theirs)
    assert [(f.id, c.id) for f, c in pairing.paired] == [(501, 1)]
    assert [(f.id, c.id) for f, c in pairing.same_email_other_login] == [(502, 2)]
    assert [(f.id, c.id) for f, c in pairing.same_login_other_email] == [(503, 3)]
    assert [u.id for u in pairing.only_in_fakturownia] == [504]
    assert [u.id for u in pairing.only_in_crm] == [4]
    assert pairing.crm_user_for(501) == 1 and pairing.crm_user_for(502) is None
    assert pairing.counts() == {
        "paired": 1, "only_in_fakturownia": 1, "only_in_crm": 1, "same_email_other_login": 1,
        "same_login_other_email": 1,
    }  # fmt: skip
    assert {row["status"] for row in pairing.rows()} == set(pairing.counts())


def test_two_crm_users_with_one_login_and_email_pair_nobody() -> None:
    twins = CrmUsers((User(1, "ola", "ola@firma.pl"), User(2, "ola", "ola@firma.pl")))
    pairing = pair_users([User(7, "ola", "ola@firma.pl")], twins)
    assert pairing.paired == [] and pairing.crm_user_for(7) is None
    assert [u.id for u in pairing.only_in_fakturownia] == [7]


def test_fakturownia_users_come_from_the_config() -> None:
    config = load_config({"fakturownia_users": [{"id": 501, "login": "anna", "email": "anna@firma.pl"}]})
    assert fakturownia_users(config.fakturownia_users) == [User(501, "anna", "anna@firma.pl")]
    with pytest.raises(ConfigError, match="fakturownia_users"):
        load_config({"fakturownia_users": [{"id": 1, "login": "a", "email": "a@b.pl"}] * 2})
    with pytest.raises(ConfigError, match=r"fakturownia_users\.0\.id"):
        load_config({"fakturownia_users": [{"id": 0, "login": "a", "email": "a@b.pl"}]})


# A CRM that does not list its users ------------------------------------------------------------------------


def test_crm_users_listed_as_json(requests_mock) -> None:
    requests_mock.get(f"{CRM_BASE}/app/users/team.json", json=[{"id": 3, "login": "ewa", "email": "ewa@x.pl"}])
    assert crm_users(crm()) == CrmUsers((User(3, "ewa", "ewa@x.pl"),))


@pytest.mark.parametrize(
    "answer",
    [
        {"status_code": 404, "json": {"code": "error", "message": "Not found"}},
        {"status_code": 200, "json": {"users": "not a list"}},
        {"status_code": 200, "text": "<users><user><login>ewa</login></user></users>"},
        {"status_code": 200, "json": [{"login": "no id"}]},
    ],
)
def test_crm_without_a_json_user_list_is_unknown_not_a_crash(requests_mock, answer: dict) -> None:
    requests_mock.get(f"{CRM_BASE}/app/users/team.json", **answer)
    found = crm_users(crm())
    assert found.known is False and found.users == () and found.reason
    pairing = pair_users([User(501, "ewa", "ewa@x.pl")], found)
    assert pairing.crm_known is False and pairing.paired == []
    assert pairing.rows()[-1]["status"] == "crm_users_unknown"


# The responsible person ------------------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=4, clients=30, invoices=40, crm_clients=10) as running:
        yield running


def test_deals_from_invoices_get_the_paired_issuer_as_responsible(sandbox: SandboxProcess, tmp_path: Path) -> None:
    team = requests.get(f"{sandbox.sugester_url}/app/users/team.json", params={"api_token": sandbox.sugester_token})
    anna = next(user for user in team.json() if user["id"] == 1)
    invoices = sandbox.dump("fakturownia")["invoices"]
    # Invoice issuers: user 1 (paired with CRM user 1 by login and e-mail) and user 2 (listed with another
    # login than the CRM's, so unpaired). The sandbox's seeded invoices are all by user 1; re-issue some as 2.
    by_two = [invoice["id"] for invoice in invoices[::3]]
    for invoice_id in by_two:
        answer = requests.put(
            f"{sandbox.fakturownia_url}/invoices/{invoice_id}.json",
            json={"api_token": sandbox.fakturownia_token, "invoice": {"user_id": 2}},
        )
        assert answer.ok, answer.text
    users = [
        {"id": 1, "login": anna["login"], "email": anna["email"].upper()},
        {"id": 2, "login": "someone.else", "email": "piotr.wisniewski@przyklad-handel.pl"},
    ]
    config = load_config({**DEMO_CONFIG, "fakturownia_users": users})
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    summary = make_sync(sandbox, store, config=config).run()
    store.close()
    grouped = deals_by_invoice(sandbox)
    assert grouped, "the run made no deals"
    for invoice_id, [deal] in grouped.items():
        expected = None if invoice_id in by_two else 1
        assert deal["responsible_id"] == expected, (invoice_id, deal)
    unpaired = sum(1 for invoice_id in grouped if invoice_id in by_two)
    assert summary["deals_without_responsible"] == unpaired > 0
    assert summary["deals_with_responsible"] == len(grouped) - unpaired > 0
