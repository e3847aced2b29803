"""Benchmark: per-reading cost of live excursion alarms at 10, 100 and 1,000 concurrent shipments.

Data: SYNTHETIC. Every shipment is a 10-minute logger around 5 °C (a seeded random walk pulled back to
5 °C, with a short excursion to 9-30 °C in about one reading in 60), under the shipped ``refrigerated``
alarm rules. The same total number of readings is spread over 10, 100 or 1,000 shipments and
interleaved round-robin, as many loggers reporting at once would arrive: with 10 shipments each has a
history 100 times longer than with 1,000.

Two figures per size, both per reading, after a warm-up that has touched every shipment once:

* ``pure``: :meth:`models.coldchain.excursions.AlarmEvaluator.reading`, found by shipment id in a dict;
* ``live``: :class:`oracle.alarms.live.LiveAlarms` as the telemetry pipeline's after-commit hook calls it,
  in committed batches of ``--batch`` readings, on a real SQLite database (temp dir) with one webhook
  registered: evaluation, alarm rows and their trail, webhook deliveries queued, checkpoints.

Times are this process's CPU time (``time.process_time``: SQLite runs in-process, so its work counts;
other processes on a shared machine do not). Flat means ``ratio_1000_over_10`` near 1. Sizes are timed
in alternation, ``--repeat`` times, and the best run of each is kept. Run alone:
``python bench/alarms.py [--readings 60000] [--batch 500] [--repeat 3]``. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.coldchain.excursions import AlarmEvaluator, load_alarm_rules
from oracle.alarms.live import LiveAlarms
from oracle.alarms.webhooks import add_webhook
from oracle.storage.alarm_tables import AlarmRow, WebhookDelivery
from oracle.storage.db import make_engine, session_factory
from oracle.storage.migrate import upgrade

SIZES = (10, 100, 1000)
T0 = 1_767_000_000
STEP_S = 600


def synthetic_stream(shipments: int, total: int, seed: int) -> list[tuple[str, int, float]]:
    """``total`` SYNTHETIC readings over ``shipments`` shipments, interleaved round-robin."""
    rng = np.random.default_rng(seed)
    per = total // shipments
    temps = np.empty((shipments, per))
    level = np.full(shipments, 5.0)
    excursion = np.zeros(shipments, dtype=int)
    for i in range(per):
        start = (rng.random(shipments) < 1 / 60) & (excursion == 0)
        excursion[start] = rng.integers(1, 8, size=int(start.sum()))
        hot = rng.uniform(9.0, 30.0, size=shipments)
        level = level + 0.3 * (5.0 - level) + rng.normal(0, 0.3, size=shipments)
        temps[:, i] = np.where(excursion > 0, hot, level)
        excursion = np.maximum(excursion - 1, 0)
    names = [f"SYN-{shipments}-{k:04d}" for k in range(shipments)]
    return [
        (names[k], (T0 + i * STEP_S + k) * 1000, round(float(temps[k, i]), 2))
        for i in range(per)
        for k in range(shipments)
    ]


def time_pure(stream: list[tuple[str, int, float]], shipments: int) -> tuple[float, int]:
    rules = load_alarm_rules("refrigerated")
    assert rules is not None
    evaluators = {name: AlarmEvaluator(rules) for name, _, _ in stream[:shipments]}
    transitions = 0
    for name, ts_ms, temp in stream[:shipments]:  # warm-up: one reading each
        evaluators[name].reading(ts_ms // 1000, temp)
    body = stream[shipments:]
    started = time.process_time()
    for name, ts_ms, temp in body:
        transitions += len(evaluators[name].reading(ts_ms // 1000, temp))
    return (time.process_time() - started) / len(body) * 1e6, transitions


def time_live(
    stream: list[tuple[str, int, float]], shipments: int, batch: int, root: Path
) -> tuple[float, int, int]:
    url = f"sqlite:///{root / f'alarms-{shipments}.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    add_webhook(sessions, root / "data", name="bench", url="http://127.0.0.1:9/never")
    live = LiveAlarms(sessions, profile_of=lambda _s, _x: "refrigerated")
    live.on_committed(stream[:shipments])  # warm-up: every shipment restored once
    body = stream[shipments:]
    started = time.process_time()
    for i in range(0, len(body), batch):
        live.on_committed(body[i : i + batch])
    per_reading = (time.process_time() - started) / len(body) * 1e6
    with sessions() as s:
        alarms = s.query(AlarmRow).count()
        queued = s.query(WebhookDelivery).count()
    engine.dispose()
    (root / f"alarms-{shipments}.sqlite3").unlink()
    return per_reading, alarms, queued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    streams = {n: synthetic_stream(n, args.readings, args.seed + n) for n in SIZES}
    pure: dict[int, float] = {}
    live: dict[int, float] = {}
    counts: dict[int, tuple[int, int, int]] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-alarms-"))
    try:
        for _ in range(args.repeat):
            for n in SIZES:
                us, transitions = time_pure(streams[n], n)
                pure[n] = min(pure.get(n, float("inf")), us)
                lus, alarms, queued = time_live(streams[n], n, args.batch, root)
                live[n] = min(live.get(n, float("inf")), lus)
                counts[n] = (transitions, alarms, queued)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"SYNTHETIC data: {args.readings} readings interleaved over 10/100/1000 shipments, refrigerated rules"
    )
    print(
        f"{'shipments':>10} {'readings/shipment':>18} {'pure us/reading':>16} {'live us/reading':>16} "
        f"{'transitions':>12} {'alarms':>7} {'webhooks queued':>16}"
    )
    for n in SIZES:
        t, a, q = counts[n]
        print(f"{n:>10} {args.readings // n:>18} {pure[n]:>16.2f} {live[n]:>16.2f} {t:>12} {a:>7} {q:>16}")
    figures = {
        "data": "synthetic",
        "readings": args.readings,
        "batch": args.batch,
        "us_per_reading_10": round(live[10], 2),
        "us_per_reading_100": round(live[100], 2),
        "us_per_reading_1000": round(live[1000], 2),
        "ratio_1000_over_10": round(live[1000] / live[10], 3),
        "pure_us_per_reading_10": round(pure[10], 3),
        "pure_us_per_reading_1000": round(pure[1000], 3),
        "pure_ratio_1000_over_10": round(pure[1000] / pure[10], 3),
        "alarms_10": counts[10][1],
        "alarms_1000": counts[1000][1],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
