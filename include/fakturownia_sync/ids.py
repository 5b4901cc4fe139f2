"""Record ids as the two APIs send them: one reading of "is this an id, and which" for every module.

Ids arrive as JSON numbers, as digit strings (external ids, `oid`, some answers), and "no id" arrives as null,
`""` or `0` (Fakturownia writes 0 for "no department" and "no client"). An id is a positive whole number;
anything else (0, negatives, booleans, floats, text with other characters, non-ASCII digits) is no id. Before
this was one function, four copies disagreed on `0`, so a department 0 was "none" in one sync and a department
in the other.
"""

from __future__ import annotations

from typing import Any


def as_id(value: Any) -> int | None:
    """The positive whole number `value` names, or None when it names no record."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            number = int(text)
            return number if number > 0 else None
    return None
