"""The CSV inputs of a backtest: a monthly series (``period,value``) and a loss series (``period,loss``).

``period`` is ``YYYY-MM`` for a monthly series; for losses it is a season (``YYYY``, the year the
coverage starts in) or a month (``YYYY-MM``, counted in the season that contains it). Blank lines and
lines starting with ``#`` (provenance notes) are skipped. Every problem is a :class:`ValidationError`
that names the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from oracle.errors import ValidationError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")
#: More rows than a thousand years of months is not an index history.
MAX_ROWS = 12_000


@dataclass(frozen=True)
class MonthlySeries:
    """Consecutive months from ``start`` (year, month); ``values[i]`` is month ``start + i``."""

    start: tuple[int, int]
    values: tuple[float, ...]

    def position(self, year: int, month: int) -> int:
        return (year - self.start[0]) * 12 + (month - self.start[1])

    def at(self, year: int, month: int) -> float | None:
        """The value of a month (calendar month may be outside 1..12: it is normalised), None if absent."""
        i = self.position(year, month)
        return self.values[i] if 0 <= i < len(self.values) else None


def _rows(path: Path, columns: tuple[str, str]) -> list[tuple[int, str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file", reason="not_found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError(f"{path}: unreadable ({e.__class__.__name__})", reason="bad_csv") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    lines = [(n, line) for n, line in lines if not line.lstrip().startswith("#")]
    if not lines:
        raise ValidationError(f"{path}: no rows", reason="empty")
    reader = csv.reader(line for _, line in lines)
    header = [c.strip() for c in next(reader)]
    if tuple(header[:2]) != columns or len(header) != 2:
        raise ValidationError(
            f"{path}: the header must be {','.join(columns)} (found {','.join(header)})",
            reason="missing_column",
        )
    out: list[tuple[int, str, str]] = []
    for (n, _), row in zip(lines[1:], reader, strict=True):
        if len(row) != 2:
            raise ValidationError(f"{path}:{n}: expected 2 fields, found {len(row)}", reason="bad_csv")
        out.append((n, row[0].strip(), row[1].strip()))
    if not out:
        raise ValidationError(f"{path}: no data rows", reason="empty")
    if len(out) > MAX_ROWS:
        raise ValidationError(f"{path}: more than {MAX_ROWS} rows", reason="too_long")
    return out


def _number(path: Path, n: int, text: str, column: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValidationError(f"{path}:{n}: {column} {text!r} is not a number", reason="bad_value") from None
    if not math.isfinite(x):
        raise ValidationError(f"{path}:{n}: {column} {text!r} is not finite", reason="bad_value")
    return x


def read_monthly_series(path: Path) -> MonthlySeries:
    """A ``period,value`` CSV of consecutive months, oldest first (a gap or duplicate is refused: write
    a missing month as an empty value, which makes every evaluation needing it skip its season)."""
    rows = _rows(path, ("period", "value"))
    values: list[float] = []
    start: tuple[int, int] | None = None
    for n, period, value in rows:
        m = _MONTH.match(period)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ValidationError(f"{path}:{n}: period {period!r} is not YYYY-MM", reason="bad_date")
        year, month = int(m.group(1)), int(m.group(2))
        if start is None:
            start = (year, month)
        expected = divmod(start[0] * 12 + start[1] - 1 + len(values), 12)
        if (year, month) != (expected[0], expected[1] + 1):
            raise ValidationError(
                f"{path}:{n}: period {period} breaks the monthly sequence "
                f"(expected {expected[0]:04d}-{expected[1] + 1:02d})",
                reason="not_consecutive",
            )
        values.append(math.nan if value == "" else _number(path, n, value, "value"))
    assert start is not None
    return MonthlySeries(start=start, values=tuple(values))


def read_losses(path: Path) -> dict[str, float]:
    """A ``period,loss`` CSV: loss (>= 0) per ``YYYY`` season or ``YYYY-MM`` month, as given."""
    out: dict[str, float] = {}
    for n, period, value in _rows(path, ("period", "loss")):
        if not (_YEAR.match(period) or (_MONTH.match(period) and 1 <= int(period[5:]) <= 12)):
            raise ValidationError(f"{path}:{n}: period {period!r} is not YYYY or YYYY-MM", reason="bad_date")
        if period in out:
            raise ValidationError(f"{path}:{n}: period {period} appears twice", reason="duplicate")
        loss = _number(path, n, value, "loss")
        if loss < 0:
            raise ValidationError(f"{path}:{n}: loss {value} is negative", reason="bad_value")
        out[period] = loss
    return out
