"""Tax ids as matching evidence: a Polish NIP in any spelling, or a foreign VAT id, each checked by its own rule.

`PL 526-104-08-28`, `5261040828` and `526 104 08 28` are one NIP, keyed as its ten digits. A foreign id is
validated by its country's rule (python-stdnum: `eu.vat` for the other EU states and Northern Ireland,
`gb.vat` for `GB...`, `ch.vat` / `ch.uid` for `CHE...`) and keyed with its country prefix, so `GB123456789`
only ever equals another GB id and never a NIP or a German number with the same digits.

Junk is no evidence even when a checksum passes: `0000000000` and `1111111111` are checksum-valid NIPs that
people type when the form insists on one, and two unrelated buyers carrying them must never be merged.
Placeholders ("brak", "n/a", "-") carry no digits at all. An id that cannot be validated is kept as text by
the caller and counts as *no tax id*: it never links, never separates, never holds a client or an invoice;
`TaxNumber.warning` says it deserves a data-quality note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum.ch import uid as ch_uid
from stdnum.ch import vat as ch_vat
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError
from stdnum.gb import vat as gb_vat
from stdnum.pl import nip

_COUNTRY_PREFIX = re.compile(r"^\s*([A-Za-z]{2})")
_DIGITS = re.compile(r"\d")


@dataclass(frozen=True)
class TaxNumber:
    raw: str
    key: str | None  # the comparable form: ten digits for a NIP, prefix + digits abroad; None when no evidence
    valid: bool
    country: str | None = None  # "PL", "DE", "GB", "CH", ... for a valid id

    @property
    def present(self) -> bool:
        return bool(self.raw.strip())

    @property
    def warning(self) -> bool:
        """Something was typed, but it is no tax id: a data-quality note, never a reason to hold anything."""
        return self.present and not self.valid


def is_junk(raw: str) -> bool:
    """No digits at all ("brak", "n/a", "-"), or all one digit (`0000000000`, `PL 111-111-11-11`)."""
    digits = _DIGITS.findall(raw)
    return not digits or len(set(digits)) == 1


def _foreign(raw: str, prefix: str) -> tuple[str, str] | None:
    """(key, country) of a valid foreign id with a two-letter prefix, None when it fails its country's rule."""
    try:
        if prefix == "GB":
            return ("GB" + gb_vat.compact(raw), "GB") if gb_vat.is_valid(raw) else None
        if prefix == "CH":
            if ch_vat.is_valid(raw) or ch_uid.is_valid(raw):  # with or without the MWST/TVA/IVA suffix
                return ch_uid.compact(raw)[:12], "CH"
            return None
        compact = eu_vat.compact(raw)  # letters that are no EU code ("brak", "n/a") make compact() refuse
        return (compact, compact[:2]) if eu_vat.is_valid(compact) else None
    except (ValidationError, ValueError, IndexError):
        return None


def check_tax_number(raw: str | None) -> TaxNumber:
    """Normalise and validate. Absent → present False; invalid or junk → key None, valid False."""
    raw = (raw or "").strip()
    if not raw:
        return TaxNumber(raw="", key=None, valid=False)
    if is_junk(raw):
        return TaxNumber(raw=raw, key=None, valid=False)
    prefix = _COUNTRY_PREFIX.match(raw)
    if prefix and prefix.group(1).upper() != "PL":
        found = _foreign(raw, prefix.group(1).upper())
        return TaxNumber(raw, found[0], True, found[1]) if found else TaxNumber(raw, None, False)
    try:
        if nip.is_valid(raw):
            return TaxNumber(raw=raw, key=nip.compact(raw), valid=True, country="PL")
    except ValidationError:
        pass
    return TaxNumber(raw=raw, key=None, valid=False)


def normalise_email(raw: str | None) -> str | None:
    """E-mail as matching evidence: whitespace and case folded; None when it is not an address."""
    value = (raw or "").strip().casefold()
    return value if "@" in value else None
