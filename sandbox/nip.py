"""Polish tax numbers (NIP) as people actually type them.

Real client lists hold the same NIP as ``5261040828``, ``526-104-08-28``,
``PL 526-104-08-28`` and so on, plus the odd one with a wrong check digit;
matching code must cope with all of them, so the seed produces all of them.
"""

from __future__ import annotations

import random

WEIGHTS = (6, 5, 7, 2, 3, 4, 5, 6, 7)

SPELLINGS = ("plain", "dashed", "spaced", "pl", "pl_dashed", "dashed_3223")
"""Named spellings, used so the CRM can pick one that differs from Fakturownia's."""


def check_digit(first_nine: str) -> int | None:
    """The NIP check digit, or None when the prefix cannot have one (sum mod 11 == 10)."""
    digit = sum(w * int(c) for w, c in zip(WEIGHTS, first_nine, strict=True)) % 11
    return None if digit == 10 else digit


def generate(rng: random.Random) -> str:
    """A random, checksum-valid NIP (ten digits, tax-office prefix not starting with 0)."""
    while True:
        first_nine = f"{rng.randint(101, 999)}{rng.randint(0, 999999):06d}"
        digit = check_digit(first_nine)
        if digit is not None:
            return f"{first_nine}{digit}"


def corrupt(nip: str, rng: random.Random) -> str:
    """The same NIP with a wrong check digit, as a typo would leave it."""
    good = int(nip[9])
    bad = rng.choice([d for d in range(10) if d != good])
    return f"{nip[:9]}{bad}"


def spell(nip: str, style: str) -> str:
    """Write ten digits in one of the spellings seen in the wild."""
    d = nip
    if style == "plain":
        return d
    if style == "dashed":
        return f"{d[:3]}-{d[3:6]}-{d[6:8]}-{d[8:]}"
    if style == "spaced":
        return f"{d[:3]} {d[3:6]} {d[6:8]} {d[8:]}"
    if style == "pl":
        return f"PL{d}"
    if style == "pl_dashed":
        return f"PL {d[:3]}-{d[3:6]}-{d[6:8]}-{d[8:]}"
    if style == "dashed_3223":
        return f"{d[:3]}-{d[3:5]}-{d[5:7]}-{d[7:]}"
    raise ValueError(f"unknown NIP spelling {style!r}")


def digits(value: str) -> str:
    """The bare digits of a spelled NIP (drops a ``PL`` prefix, dashes and spaces)."""
    return "".join(c for c in value if c.isdigit())
