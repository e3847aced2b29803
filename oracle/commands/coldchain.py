"""CLI commands for cold chain: ``oracle indices mkt`` and ``oracle models train coldchain``.

Plain functions with Typer option defaults; the CLI module mounts them. Bad input ends with one line
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from models.coldchain.mkt import mean_kinetic_temperature
from models.coldchain.profiles import PROFILE_DIR
from oracle.errors import OracleError, ValidationError

#: Shipped artifacts live next to the profiles, inside the models package.
DEFAULT_ARTIFACT_DIR = PROFILE_DIR.parent / "artifacts" / "coldchain"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise ValidationError(f"{path}: no such file", reason="not_found") from exc
    except IsADirectoryError as exc:
        raise ValidationError(f"{path}: is a directory", reason="not_found") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: not a readable CSV ({exc})", reason="bad_csv") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_temperature_log(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``ts,temp_c`` CSV (ts ISO-8601 UTC, e.g. ``2024-05-01T10:00:00Z``) sorted by time.

    Returns (UNIX seconds, °C). :raises ValidationError: unreadable file, missing columns, bad times
    or temperatures (the ``reason`` says which).
    """
    frame = _read_csv(path)
    for column in ("ts", "temp_c"):
        if column not in frame.columns:
            raise ValidationError(
                f"{path}: missing column {column!r} (need ts,temp_c)", reason="missing_column"
            )
    if frame.empty:
        raise ValidationError(f"{path}: no rows", reason="empty")
    try:
        stamps = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"{path}: column 'ts' must be ISO-8601 UTC times, e.g. 2024-05-01T10:00:00Z", reason="bad_time"
        ) from exc
    if stamps.isna().any():
        raise ValidationError(f"{path}: column 'ts' has empty times", reason="bad_time")
    temps = pd.to_numeric(frame["temp_c"], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(temps).any():
        row = int(np.flatnonzero(np.isnan(temps))[0]) + 2  # 1-based, after the header line
        raise ValidationError(f"{path}: line {row}: temp_c is not a number", reason="non_finite")
    seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return np.asarray(seconds, dtype=np.int64), temps


def mkt_command(
    input: Path = typer.Option(..., "--input", help="CSV with columns ts (ISO-8601 UTC) and temp_c (°C)"),  # noqa: B008
    dh_over_r: float = typer.Option(10000.0, "--dh-over-r", help="Activation energy over R, kelvin."),
) -> None:
    """Print the interval-weighted mean kinetic temperature (°C, two decimals) of a temperature log."""
    try:
        ts, temps = read_temperature_log(input)
        value = mean_kinetic_temperature(ts, temps, dh_over_r=dh_over_r)
    except OracleError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{value:.2f}")


def train_coldchain_command(
    data: Path | None = typer.Option(  # noqa: B008
        None, "--data", help="Labelled readings CSV (see models.coldchain.breach_model); default: simulate."
    ),
    out: Path = typer.Option(DEFAULT_ARTIFACT_DIR, "--out", help="directory for artifact + card"),  # noqa: B008
    seed: int = typer.Option(7, "--seed", help="Seed for the simulator and LightGBM."),
) -> None:
    """Train the cold-chain breach model, save it with its card, print the holdout figures."""
    # LightGBM is heavy: import it only when training is asked for.
    from models import registry
    from models.coldchain.breach_model import train

    try:
        frame = _read_csv(data) if data is not None else None
        trained = train(frame, seed=seed)
        path = registry.save_model(out, artifact=trained.artifact, card=trained.card)
    except OracleError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{out}: cannot write the model ({exc.strerror})") from None
    m = trained.card.metrics
    typer.echo(f"model_id 0x{trained.card.model_id_hex}")
    typer.echo(f"saved {path}")
    typer.echo(f"compromised precision {m['compromised_precision']:.3f} recall {m['compromised_recall']:.3f}")
    typer.echo(f"early warning precision {m['warning_precision']:.3f} recall {m['warning_recall']:.3f}")
    lead = m["median_lead_time_min"]
    typer.echo(f"median lead time over rules {lead:.0f} min" if math.isfinite(lead) else "no lead time")
    typer.echo(json.dumps(dict(m), sort_keys=True))
