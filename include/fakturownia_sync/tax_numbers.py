"""Tax numbers as matching evidence: a Polish NIP in any spelling, validated by its checksum.

`PL 526-104-08-28`, `5261040828` and `526 104 08 28` are one NIP. A number that fails the checksum is not
evidence of anything. A foreign EU VAT number (another country prefix) is compared in its compact form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum.eu import vat
from stdnum.exceptions import ValidationError
from stdnum.pl import nip

_FOREIGN_PREFIX = re.compile(r"^\s*([A-Za-z]{2})")


@dataclass(frozen=True)
class TaxNumber:
    raw: str
    key: str | None  # the comparable form, None when absent or invalid
    valid: bool

    @property
    def present(self) -> bool:
        return bool(self.raw.strip())


def check_tax_number(raw: str | None) -> TaxNumber:
    """Normalise and validate. Absent → present False; invalid checksum → key None, valid False."""
    raw = (raw or "").strip()
    if not raw:
        return TaxNumber(raw="", key=None, valid=False)
    prefix = _FOREIGN_PREFIX.match(raw)
    if prefix and prefix.group(1).upper() != "PL":
        try:  # letters that are no EU country code ("brak", "n/a") make compact() itself refuse
            compact = vat.compact(raw)
        except ValidationError:
            return TaxNumber(raw=raw, key=None, valid=False)
        return TaxNumber(raw=raw, key=compact, valid=True) if vat.is_valid(compact) else TaxNumber(raw, None, False)
    if nip.is_valid(raw):
        return TaxNumber(raw=raw, key=nip.compact(raw), valid=True)
    return TaxNumber(raw=raw, key=None, valid=False)


def normalise_email(raw: str | None) -> str | None:
    """E-mail as matching evidence: whitespace and case folded; None when it is not an address."""
    value = (raw or "").strip().casefold()
    return value if "@" in value else None
