"""Config validation and connection → account resolution."""

from __future__ import annotations

import pytest

from fakturownia_sync.accounts import FAKTUROWNIA, SUGESTER, resolve_account
from fakturownia_sync.config import DEFAULT_INVOICE_KINDS, load_config
from fakturownia_sync.errors import ConfigError
from fakturownia_sync.tax_numbers import check_tax_number, normalise_email


def test_absent_variable_means_defaults() -> None:
    config = load_config(None)
    assert config.invoice_kinds == DEFAULT_INVOICE_KINDS
    assert (config.deal_amount, config.conflict_policy, config.lookback_minutes) == ("gross", "newest_wins", 60)
    assert load_config("{}") == config


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ('{"dela_amount": "net"}', "unknown key 'dela_amount'"),
        ('{"lookback_minutes": "60"}', "key 'lookback_minutes'"),
        ('{"deal_amount": "brutto"}', "key 'deal_amount'"),
        ('{"conflict_policy": "mine"}', "key 'conflict_policy'"),
        ('{"invoice_kinds": ["vat", "faktura"]}', "key 'invoice_kinds'"),
        ('{"department_map": [{"fakturownia_department_id": 1}]}', "key 'department_map.0.crm_department_id'"),
        ('{"no_department": {"crm": 1}}', "unknown key 'no_department.crm'"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_config_names_the_key(raw: str, names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert names in str(info.value)
    assert "fakturownia_sync_config" in str(info.value)


def test_department_map_must_be_one_to_one() -> None:
    pairs = [
        {"fakturownia_department_id": 1, "crm_department_id": 5},
        {"fakturownia_department_id": 2, "crm_department_id": 5},
    ]
    with pytest.raises(ConfigError, match="crm_department_id"):
        load_config({"department_map": pairs})


@pytest.mark.parametrize(
    ("host", "token", "base", "name"),
    [
        ("acme", "abc", "https://acme.fakturownia.pl", "acme"),
        ("", "abc/acme", "https://acme.fakturownia.pl", "acme"),
        (None, "abc/acme", "https://acme.fakturownia.pl", "acme"),
        ("http://127.0.0.1:18081", "abc", "http://127.0.0.1:18081", "127.0.0.1:18081"),
        ("https://acme.fakturownia.pl/", "abc", "https://acme.fakturownia.pl", "acme"),
        ("acme.fakturownia.pl", "abc", "https://acme.fakturownia.pl", "acme"),
    ],
)
def test_resolve_fakturownia_account(host, token, base, name) -> None:
    account = resolve_account(FAKTUROWNIA, token=token, host=host)
    assert (account.base_url, account.name, account.token) == (base, name, token)
    assert token not in repr(account) or (token == "abc" and "token=" not in repr(account))


def test_resolve_with_port_and_schema() -> None:
    account = resolve_account(SUGESTER, token="t", host="127.0.0.1", port=18082, schema="http")
    assert account.base_url == "http://127.0.0.1:18082"
    assert resolve_account(SUGESTER, token="t/firma").base_url == "https://firma.sugester.pl"


def test_resolve_refuses_missing_token_or_account() -> None:
    with pytest.raises(ConfigError, match="no API token"):
        resolve_account(FAKTUROWNIA, token="", host="acme", conn_id="fakturownia_default")
    with pytest.raises(ConfigError, match="names no Fakturownia account"):
        resolve_account(FAKTUROWNIA, token="abc", host="", conn_id="fakturownia_default")


@pytest.mark.parametrize(
    "spelling", ["PL 526-104-08-28", "5261040828", "526 104 08 28", "pl5261040828", " 526-10-40-828 "]
)
def test_one_nip_in_many_spellings(spelling: str) -> None:
    assert check_tax_number(spelling).key == "5261040828"


def test_invalid_nip_is_not_evidence() -> None:
    checked = check_tax_number("526-104-08-29")
    assert checked.present and not checked.valid and checked.key is None
    assert not check_tax_number("").present
    assert check_tax_number("DE 136 695 976").key == "DE136695976"
    for junk in ("brak", "n/a", "XX123"):
        assert check_tax_number(junk).key is None and not check_tax_number(junk).valid


def test_email_is_folded() -> None:
    assert normalise_email("  Biuro@Firma.PL ") == "biuro@firma.pl"
    assert normalise_email("brak") is None
