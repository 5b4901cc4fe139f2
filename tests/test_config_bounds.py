"""Every number in the config is bounded and fails with one sentence naming its key; `anonymous_buyers`;
the fingerprint covers every key that decides how a deal looks."""

from __future__ import annotations

import json

import pytest

from fakturownia_sync.config import DECISIVE_KEYS, NON_DECISIVE_KEYS, SyncConfig, load_config
from fakturownia_sync.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "sentence"),
    [
        ({"lookback_minutes": 10**10}, "key 'lookback_minutes': must be at most 43200 minutes (30 days)"),
        ({"lookback_minutes": -1}, "key 'lookback_minutes': must be at least 0"),
        ({"quarantine_retry_minutes": 43201}, "key 'quarantine_retry_minutes': must be at most 43200"),
        ({"quarantine_retry_minutes": -5}, "key 'quarantine_retry_minutes': must be at least 0"),
        ({"requests_per_minute": {"sugester": -1}}, "key 'requests_per_minute.sugester': must be at least 0"),
        ({"requests_per_minute": {"fakturownia": 10**9}}, "key 'requests_per_minute.fakturownia': must be at most"),
        ({"crm_write_concurrency": 0}, "key 'crm_write_concurrency': must be at least 1"),
        ({"crm_write_concurrency": 33}, "key 'crm_write_concurrency': must be at most 32"),
        (
            {"department_map": [{"fakturownia_department_id": 0, "crm_department_id": 1}]},
            "key 'department_map.0.fakturownia_department_id': must be at least 1",
        ),
        ({"no_department": {"crm_department_id": 2**64}}, "key 'no_department.crm_department_id': must be at most"),
        ({"lookback_minutes": True}, "key 'lookback_minutes'"),
    ],
)
def test_out_of_bounds_numbers_fail_with_one_sentence_naming_the_key(raw: dict, sentence: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(raw))
    message = str(info.value)
    assert sentence in message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        ({"lookback_minutes": 43200, "quarantine_retry_minutes": 0, "crm_write_concurrency": 32}, True),
        ({"lookback_minutes": 0, "crm_write_concurrency": 1, "requests_per_minute": {"sugester": 0}}, True),
    ],
)
def test_bounds_are_inclusive(raw: dict, valid: bool) -> None:
    assert isinstance(load_config(raw), SyncConfig) is valid


def test_huge_lookback_no_longer_overflows_later() -> None:
    with pytest.raises(ConfigError, match="lookback_minutes"):
        load_config({"lookback_minutes": 10**10})


def test_anonymous_buyers_defaults_to_one_client_per_buyer() -> None:
    config = load_config(None)
    assert (config.anonymous_buyers.policy, config.anonymous_buyers.crm_client_id) == ("per_buyer", None)


def test_anonymous_buyers_catch_all_and_quarantine_are_accepted() -> None:
    catch_all = load_config({"anonymous_buyers": {"policy": "catch_all", "crm_client_id": 123}}).anonymous_buyers
    assert (catch_all.policy, catch_all.crm_client_id) == ("catch_all", 123)
    assert load_config({"anonymous_buyers": {"policy": "quarantine"}}).anonymous_buyers.policy == "quarantine"


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"policy": "catch_all"}, "key 'anonymous_buyers': policy 'catch_all' needs 'crm_client_id'"),
        ({"policy": "per_buyer", "crm_client_id": 5}, "'crm_client_id' is used only by policy 'catch_all'"),
        ({"policy": "everyone"}, "key 'anonymous_buyers.policy'"),
        ({"policy": "catch_all", "crm_client_id": "123"}, "key 'anonymous_buyers.crm_client_id'"),
        ({"policy": "catch_all", "crm_client_id": 0}, "key 'anonymous_buyers.crm_client_id': must be at least 1"),
        ({"policy": "quarantine", "client": 1}, "unknown key 'anonymous_buyers.client'"),
    ],
)
def test_bad_anonymous_buyers_names_the_key(raw: dict, names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"anonymous_buyers": raw})
    assert names in str(info.value)


def test_every_config_key_is_classified_for_the_fingerprint() -> None:
    assert set(SyncConfig.model_fields) == DECISIVE_KEYS | NON_DECISIVE_KEYS
    assert not DECISIVE_KEYS & NON_DECISIVE_KEYS


@pytest.mark.parametrize(
    "change",
    [
        {"deal_amount": "net"},
        {"department_map": [{"fakturownia_department_id": 11, "crm_department_id": 1}]},
        {"no_department": {"crm_department_id": 4}},
        {"invoice_kinds": ["vat"]},
        {"anonymous_buyers": {"policy": "quarantine"}},
        {"anonymous_buyers": {"policy": "catch_all", "crm_client_id": 9}},
    ],
)
def test_fingerprint_changes_with_every_key_that_decides_how_a_deal_looks(change: dict) -> None:
    assert load_config(change).fingerprint() != load_config(None).fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"lookback_minutes": 5},
        {"quarantine_retry_minutes": 5},
        {"crm_write_concurrency": 8},
        {"requests_per_minute": {"sugester": 600}},
        {"conflict_policy": "crm_wins"},
    ],
)
def test_fingerprint_ignores_throughput_and_timing(change: dict) -> None:
    assert load_config(change).fingerprint() == load_config(None).fingerprint()


def test_fingerprint_ignores_the_order_of_kinds_and_pairs() -> None:
    pairs = [
        {"fakturownia_department_id": 11, "crm_department_id": 1},
        {"fakturownia_department_id": 12, "crm_department_id": 2},
    ]
    one = load_config({"department_map": pairs, "invoice_kinds": ["vat", "receipt"]})
    other = load_config({"department_map": pairs[::-1], "invoice_kinds": ["receipt", "vat"]})
    assert one.fingerprint() == other.fingerprint()
