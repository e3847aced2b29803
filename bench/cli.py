"""How long the ``oracle`` command takes to start, beside the imports every Typer CLI pays.

Runs ``oracle --help``, ``oracle version`` and ``python -c "import typer, rich"`` as subprocesses of
this interpreter, interleaved (one of each per round, so load on the machine hits all three alike), and
compares medians. The goal (issue 16 item 11): neither command takes more than twice the import.

    .venv/bin/python bench/cli.py [--rounds 15]

Prints a table and ends with one JSON line; ``cli_over_import`` is the worse of the two ratios. Exits 1
when a command fails or the ratio is above ``--limit`` (default 2.0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: The least any Typer CLI pays to run a command: typer 0.29 coerces even an absent ``--help`` flag
#: through pydantic, so this is the floor under ``oracle version`` (a reference, not part of the ratio).
MINIMAL_TYPER_APP = """
import typer
app = typer.Typer(add_completion=False)
@app.command()
def version() -> None:
    print("0")
@app.command()
def other() -> None:
    pass
app(["version"])
"""

#: The installed executable (its entry point, oracle.entry, answers these two without Typer).
ORACLE = str(Path(sys.executable).with_name("oracle"))

CASES: dict[str, list[str]] = {
    "import typer, rich": [sys.executable, "-c", "import typer, rich"],
    "minimal Typer app": [sys.executable, "-c", MINIMAL_TYPER_APP],
    "oracle --help": [ORACLE, "--help"],
    "oracle version": [ORACLE, "version"],
    # The same two through the Typer app (every other command's path): a reference, not in the ratio.
    "oracle --help via Typer": [sys.executable, "-c", "from oracle.cli import main; main()", "--help"],
}


def _time_once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, check=False, timeout=120)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved repetitions (default 15)")
    parser.add_argument("--limit", type=float, default=2.0, help="highest acceptable cli_over_import")
    args = parser.parse_args()

    # No ORACLE_* settings: the commands must not need any to start.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    for argv in CASES.values():  # warm the file cache and the bytecode once, untimed
        _time_once(argv, env)
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, argv in CASES.items():
            samples[name].append(_time_once(argv, env))

    medians = {name: statistics.median(s) for name, s in samples.items()}
    base = medians["import typer, rich"]
    ratios = {name: medians[name] / base for name in CASES}
    print(f"{'command':24} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'× import':>9}")
    for name, s in samples.items():
        print(
            f"{name:24} {medians[name] * 1000:10.0f} {min(s) * 1000:8.0f} {max(s) * 1000:8.0f}"
            f" {ratios[name]:9.2f}"
        )
    worst = max(ratios["oracle --help"], ratios["oracle version"])
    print(f"cli_over_import {worst:.2f} (goal <= {args.limit:.1f}) over {args.rounds} interleaved rounds")
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "import_typer_rich_ms": round(base * 1000, 1),
                "help_ms": round(medians["oracle --help"] * 1000, 1),
                "version_ms": round(medians["oracle version"] * 1000, 1),
                "help_over_import": round(ratios["oracle --help"], 3),
                "version_over_import": round(ratios["oracle version"], 3),
                "minimal_typer_app_ms": round(medians["minimal Typer app"] * 1000, 1),
                "minimal_typer_app_over_import": round(ratios["minimal Typer app"], 3),
                "typer_help_over_import": round(ratios["oracle --help via Typer"], 3),
                "bytecode_cache": not sys.dont_write_bytecode or bool(sys.pycache_prefix),
                "cli_over_import": round(worst, 3),
                "ok": worst <= args.limit,
            }
        )
    )
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
