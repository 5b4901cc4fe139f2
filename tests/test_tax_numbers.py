"""Tax ids as evidence: NIP junk is no evidence, foreign ids match only their own country, invalid ids hold nothing."""

from __future__ import annotations

import pytest

from fakturownia_sync.client_keys import tax_key
from fakturownia_sync.tax_numbers import check_tax_number


@pytest.mark.parametrize("junk", ["0000000000", "1111111111", "PL 000-000-00-00", "brak", "n/a", "-", "BRAK NIP"])
def test_junk_tax_ids_are_no_evidence_even_when_the_checksum_passes(junk: str) -> None:
    checked = check_tax_number(junk)
    assert checked.key is None and not checked.valid and checked.warning


def test_a_polish_nip_with_or_without_its_prefix_is_one_key() -> None:
    assert tax_key("PL5261040828") == tax_key("5261040828") == tax_key("pl 526-104-08-28") == "5261040828"
    assert check_tax_number("PL5261040828").country == "PL"


@pytest.mark.parametrize(
    ("raw", "key", "country"),
    [
        ("GB980780684", "GB980780684", "GB"),
        ("gb 980 7806 84", "GB980780684", "GB"),
        ("CHE-116.281.710 MWST", "CHE116281710", "CH"),
        ("CHE116281710", "CHE116281710", "CH"),
        ("DE 136 695 976", "DE136695976", "DE"),
    ],
)
def test_foreign_ids_are_validated_by_their_country_and_keyed_with_it(raw: str, key: str, country: str) -> None:
    checked = check_tax_number(raw)
    assert (checked.key, checked.country, checked.valid, checked.warning) == (key, country, True, False)


def test_a_foreign_id_matches_only_the_same_country() -> None:
    assert tax_key("GB980780684") != tax_key("980780684") and tax_key("980780684") is None
    assert tax_key("GB980780684") != tax_key("DE980780684")


@pytest.mark.parametrize("invalid", ["5261040829", "GB980780685", "CHE-116.281.711", "DE136695977", "12345"])
def test_an_id_failing_its_rule_is_kept_as_text_and_flagged(invalid: str) -> None:
    checked = check_tax_number(invalid)
    assert checked.raw == invalid and checked.key is None and checked.warning


def test_nothing_typed_is_no_warning() -> None:
    assert not check_tax_number("").warning and not check_tax_number(None).present
