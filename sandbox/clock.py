"""Time as the vendors print it: Europe/Warsaw offsets, millisecond precision.

Seeded records are anchored to a fixed instant so the same seed always yields
the same bytes; writes made at run time use the wall clock, but never go
backwards, so ``updated_at`` stays a usable cursor.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

WARSAW = ZoneInfo("Europe/Warsaw")
ANCHOR = datetime(2026, 11, 1, 12, 0, tzinfo=WARSAW)
"""Every seeded timestamp lies at or before this instant."""
ANCHOR_MS = int(ANCHOR.timestamp()) * 1000


def format_ms(epoch_ms: int) -> str:
    """Render epoch milliseconds like ``2017-04-07T17:07:53.000+02:00``."""
    seconds, millis = divmod(epoch_ms, 1000)
    moment = datetime.fromtimestamp(seconds, WARSAW).replace(microsecond=millis * 1000)
    return moment.isoformat(timespec="milliseconds")


def date_of_ms(epoch_ms: int) -> date:
    """The Warsaw calendar day of an instant."""
    return datetime.fromtimestamp(epoch_ms // 1000, WARSAW).date()


def parse_timestamp_ms(value: object) -> int | None:
    """Epoch milliseconds of an ISO timestamp, or None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=WARSAW)
    return int(moment.timestamp() * 1000)


def today() -> date:
    """The current Warsaw day, which relative periods such as ``last_12_months`` use."""
    return datetime.now(WARSAW).date()


def parse_iso_date(value: object) -> date | None:
    """A strict ``YYYY-MM-DD`` date, or None for anything else."""
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def add_months(day: date, months: int) -> date:
    """Shift by calendar months, clamping to the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


class WriteClock:
    """Hands out strictly increasing timestamps for records written at run time.

    Two writes in the same millisecond, or a wall clock behind the newest
    stored record, would otherwise produce duplicate or older ``updated_at``
    values and break incremental pulls ordered by ``updated_at``.
    """

    def __init__(self, floor_ms: int = 0) -> None:
        self._last_ms = floor_ms

    def observe(self, epoch_ms: int | None) -> None:
        """Never hand out a timestamp at or before one already stored."""
        if epoch_ms is not None and epoch_ms > self._last_ms:
            self._last_ms = epoch_ms

    def now_ms(self) -> int:
        wall = int(datetime.now(WARSAW).timestamp() * 1000)
        self._last_ms = max(wall, self._last_ms + 1)
        return self._last_ms

    def now(self) -> str:
        return format_ms(self.now_ms())
