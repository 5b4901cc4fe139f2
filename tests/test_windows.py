"""Backfill windows: calendar-aligned, contiguous, clipped, and the ledger's skip logic is built on them."""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta

import pytest

from fakturownia_sync.windows import WINDOW_SIZES, count_windows, split_windows


def test_months_are_calendar_aligned_and_clipped() -> None:
    assert split_windows(date(2024, 1, 15), date(2024, 3, 10)) == [
        (date(2024, 1, 15), date(2024, 1, 31)),
        (date(2024, 2, 1), date(2024, 2, 29)),
        (date(2024, 3, 1), date(2024, 3, 10)),
    ]


def test_weeks_quarters_years_days() -> None:
    assert split_windows(date(2026, 11, 25), date(2026, 12, 2), "week") == [
        (date(2026, 11, 25), date(2026, 11, 29)),  # Wednesday to Sunday
        (date(2026, 11, 30), date(2026, 12, 2)),
    ]
    assert split_windows(date(2025, 2, 1), date(2025, 12, 31), "quarter")[:2] == [
        (date(2025, 2, 1), date(2025, 3, 31)),
        (date(2025, 4, 1), date(2025, 6, 30)),
    ]
    assert split_windows(date(2023, 6, 1), date(2025, 1, 1), "year") == [
        (date(2023, 6, 1), date(2023, 12, 31)),
        (date(2024, 1, 1), date(2024, 12, 31)),
        (date(2025, 1, 1), date(2025, 1, 1)),
    ]
    assert len(split_windows(date(2024, 1, 1), date(2024, 12, 31), "day")) == 366


@pytest.mark.parametrize("size", WINDOW_SIZES)
def test_windows_cover_the_range_exactly_once(size: str) -> None:
    start, end = date(2022, 12, 30), date(2026, 3, 3)
    windows = split_windows(start, end, size)
    assert windows[0][0] == start and windows[-1][1] == end
    for (_, previous_end), (next_start, _) in itertools.pairwise(windows):
        assert next_start == previous_end + timedelta(days=1)
    assert all(first <= last for first, last in windows)


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="before"):
        split_windows(date(2024, 2, 1), date(2024, 1, 1))
    with pytest.raises(ValueError, match="window must be"):
        split_windows(date(2024, 1, 1), date(2024, 2, 1), "fortnight")


@pytest.mark.parametrize("size", WINDOW_SIZES)
def test_window_count_is_computed_without_building_the_windows(size: str) -> None:
    rng = random.Random(size)
    for _ in range(400):
        start = date(2000, 1, 1) + timedelta(days=rng.randrange(36_000))
        end = start + timedelta(days=rng.choice((0, 1, 6, 7, 30, 31, 92, 365, rng.randrange(2_000))))
        assert count_windows(start, end, size) == len(split_windows(start, end, size)), (start, end)
    assert count_windows(date(2000, 1, 1), date(9999, 12, 31), size) >= 8000  # instant, even for years 2000-9999
