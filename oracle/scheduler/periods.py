"""Month arithmetic for drought periods (``YYYY-MM``, UTC)."""

from __future__ import annotations

import datetime as dt

from oracle.errors import ValidationError


def parse_period(period: str) -> tuple[int, int]:
    """(year, month) of ``YYYY-MM``; the same rule as the drought evaluation, without importing it."""
    try:
        year_s, month_s = period.split("-")
        year, month = int(year_s), int(month_s)
    except ValueError:
        raise ValidationError(f"period {period!r} must be YYYY-MM", reason="bad_period") from None
    if not (1 <= month <= 12 and 1900 <= year <= 2999) or len(period) != 7:
        raise ValidationError(f"period {period!r} must be YYYY-MM", reason="bad_period")
    return year, month


def month_index(period: str) -> int:
    """Months since year 0 (``YYYY-MM`` → year × 12 + month − 1); raises ``ValidationError bad_period``."""
    year, month = parse_period(period)
    return year * 12 + month - 1


def period_of_index(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def periods_between(first: str, last: str) -> list[str]:
    """Every period from ``first`` to ``last`` inclusive (empty when ``first`` is after ``last``)."""
    return [period_of_index(i) for i in range(month_index(first), month_index(last) + 1)]


def last_closed_period(now: dt.datetime) -> str:
    """The month before ``now``'s month (UTC): the latest period whose data can be complete."""
    now = now.astimezone(dt.UTC)
    return period_of_index(now.year * 12 + now.month - 1 - 1)
