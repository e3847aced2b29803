"""Month arithmetic for drought periods (``YYYY-MM``, UTC)."""

from __future__ import annotations

import datetime as dt

from oracle.decisions.drought import parse_period


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
