"""Money the way the vendors print it.

Fakturownia prints Rails decimals: at least one fractional digit, trailing
zeros dropped (``"952.5"``, ``"0.0"``). Sugester deal prices are kept with
exactly two decimals. Arithmetic is done in integer grosze or ``Decimal`` so
that totals always add up to the cent.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")


def cents_to_str(cents: int) -> str:
    """``95250`` → ``"952.5"``, ``0`` → ``"0.0"``, ``-1999`` → ``"-19.99"``."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    if frac % 10 == 0:
        return f"{sign}{whole}.{frac // 10}"
    return f"{sign}{whole}.{frac:02d}"


def decimal_to_str(value: Decimal) -> str:
    """Rails-style rendering of an arbitrary decimal, rounded to the cent."""
    return cents_to_str(int(value.quantize(CENT, rounding=ROUND_HALF_UP) * 100))


def to_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a JSON number or numeric string; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = repr(value)
    if not isinstance(value, str):
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def round_cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)
