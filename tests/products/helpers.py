"""Small product files and series written into a test's tmp_path."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def january_terms(**changes: Any) -> dict[str, Any]:
    """One window (January) on a January-only coverage: one evaluation per year, easy to compute."""
    terms: dict[str, Any] = {
        "id": "jan-rain",
        "name": "January rainfall",
        "version": 1,
        "index": {"kind": "rainfall_total", "unit": "mm"},
        "period_grid": "seasonal",
        "coverage": {"start_month": 1, "months": 1},
        "windows": [{"name": "jan", "first_month": 1, "last_month": 1, "weight": 1.0}],
        "trigger": 100,
        "exit": 50,
        "limit": 1000,
        "pricing": {"loading": 0.5},
    }
    terms.update(changes)
    return terms


def write_product(folder: Path, terms: dict[str, Any], suffix: str = ".json") -> Path:
    path = folder / f"{terms['id']}{suffix}"
    path.write_text(json.dumps(terms), encoding="utf-8")
    return path


def write_series(path: Path, start_year: int, values_by_month: Sequence[float | None]) -> Path:
    """``period,value`` from January of ``start_year``, one value per month (None = empty)."""
    lines = ["# test series", "period,value"]
    for i, v in enumerate(values_by_month):
        year, month = start_year + i // 12, i % 12 + 1
        lines.append(f"{year:04d}-{month:02d},{'' if v is None else v}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def januaries(path: Path, start_year: int, jan_values: Sequence[float], other: float = 0.0) -> Path:
    """A series whose Januaries hold ``jan_values`` and every other month ``other``."""
    months: list[float | None] = []
    for v in jan_values:
        months += [v] + [other] * 11
    return write_series(path, start_year, months)
