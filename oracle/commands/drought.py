"""CLI commands for drought: ``oracle indices spi`` and ``oracle models train drought``.

Plain functions with Typer option defaults; the CLI module mounts them. Bad input ends with one line
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from models.drought.spi import spi
from models.paths import DROUGHT_MODEL_DIR as DEFAULT_MODEL_DIRECTORY
from oracle.errors import OracleError, ValidationError

#: More than this in one month has never been observed anywhere (the wettest months on record are
#: ~9,300 mm); larger values mean the unit is not mm (e.g. tenths of mm or a daily-sum mistake).
MAX_MONTHLY_MM = 10_000.0
_CALIBRATION = re.compile(r"^\s*(\d{4})\s*-\s*(\d{4})\s*$")
_OTHER_UNITS = ("precip_m", "precip_cm", "precip_in", "precip_inch", "precip", "precipitation")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def read_monthly_precip(path: Path) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Read a ``date,precip_mm`` CSV of consecutive months.

    :raises ValidationError: unreadable file, missing columns, unparseable or non-monthly dates,
        gaps or duplicates, negative or implausible values (``reason`` says which).
    """
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise ValidationError(f"{path}: no such file", reason="not_found") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: not a readable CSV ({exc})", reason="bad_csv") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if "precip_mm" not in frame.columns:
        other = [c for c in frame.columns if c.lower() in _OTHER_UNITS]
        hint = f" (found {other[0]!r}: convert to millimetres and name it precip_mm)" if other else ""
        raise ValidationError(f"{path}: missing column 'precip_mm'{hint}", reason="missing_column")
    if "date" not in frame.columns:
        raise ValidationError(f"{path}: missing column 'date'", reason="missing_column")
    if frame.empty:
        raise ValidationError(f"{path}: no rows", reason="empty")
    try:
        dates = pd.DatetimeIndex(pd.to_datetime(frame["date"], format="mixed"))
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{path}: column 'date' has unparseable dates", reason="bad_date") from exc
    periods = dates.to_period("M")
    steps = np.diff(periods.asi8)
    if steps.size and not np.all(steps == 1):
        bad = int(np.argmax(steps != 1)) + 1
        raise ValidationError(
            f"{path}: dates must be consecutive months; row {bad + 1} ({dates[bad].date()}) follows "
            f"{dates[bad - 1].date()}",
            reason="not_monthly",
        )
    precip = pd.to_numeric(frame["precip_mm"], errors="coerce").to_numpy(dtype=np.float64)
    unparsed = np.isnan(precip) & frame["precip_mm"].notna().to_numpy()
    if unparsed.any():
        raise ValidationError(f"{path}: precip_mm has non-numeric values", reason="not_numeric")
    if np.any(precip < 0.0):
        row = int(np.argmax(precip < 0.0))
        raise ValidationError(
            f"{path}: negative precipitation {precip[row]} on {dates[row].date()}", reason="negative"
        )
    if np.any(precip > MAX_MONTHLY_MM):
        raise ValidationError(
            f"{path}: monthly precipitation above {MAX_MONTHLY_MM:.0f} mm; the unit is not millimetres",
            reason="wrong_unit",
        )
    return periods.to_timestamp(), precip


def spi_command(
    input: Path = typer.Option(..., "--input", help="CSV with columns date,precip_mm (monthly totals, mm)"),  # noqa: B008
    scale: int = typer.Option(..., "--scale", help="accumulation in months, e.g. 1, 3 or 6"),
    calibration: str | None = typer.Option(None, "--calibration", help="YYYY-YYYY"),
) -> None:
    """Print the SPI of a monthly precipitation series as CSV ``date,spi`` (empty where undefined)."""
    try:
        dates, precip = read_monthly_precip(input)
        window: tuple[int, int] | None = None
        if calibration is not None:
            match = _CALIBRATION.match(calibration)
            if match is None:
                raise ValidationError(
                    f"--calibration must be YYYY-YYYY, got {calibration!r}", reason="calibration"
                )
            window = (int(match.group(1)), int(match.group(2)))
        values = spi(
            precip,
            scale=scale,
            calibration=window,
            start_year=int(dates[0].year),
            start_month=int(dates[0].month),
        )
    except OracleError as exc:
        raise _fail(str(exc)) from None
    lines = ["date,spi"]
    for day, value in zip(dates, values, strict=True):
        lines.append(f"{day.date().isoformat()},{'' if np.isnan(value) else f'{value:.6f}'}")
    sys.stdout.write("\n".join(lines) + "\n")


def read_labelled(path: Path) -> pd.DataFrame:
    """Read labelled training data from CSV or Parquet (by suffix).

    :raises ValidationError: missing, unreadable or unsupported file.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except FileNotFoundError as exc:
        raise ValidationError(f"{path}: no such file", reason="not_found") from exc
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read ({exc})", reason="bad_file") from exc
    raise ValidationError(f"{path}: use a .csv or .parquet file", reason="bad_file")


def train_drought_command(
    data: Path | None = typer.Option(  # noqa: B008
        None, "--data", help="labelled CSV/Parquet: date, feature columns, usdm_class; default synthetic"
    ),
    out: Path = typer.Option(DEFAULT_MODEL_DIRECTORY, "--out", help="registry directory"),  # noqa: B008
    seed: int = typer.Option(42, "--seed", help="training seed (same data + seed = same artifact)"),
) -> None:
    """Train the drought severity model, store artifact + card in ``--out`` and print the card summary."""
    # Imported here so `oracle --help` does not load LightGBM.
    from models.drought.training import model_card, train_default, train_severity_model
    from models.registry import save_model

    try:
        if data is None:
            artifact, card = train_default(seed=seed)
        else:
            result = train_severity_model(read_labelled(data), seed=seed)
            card = model_card(result, description=f"Drought severity trained on {data.name}")
            artifact = result.artifact
        path = save_model(out, artifact=artifact, card=card)
    except OracleError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write to {out}: {exc.strerror}") from None
    summary = {
        "model_id": "0x" + card.model_id_hex,
        "artifact": str(path),
        "metrics": card.metrics["holdout"],
        "baseline_spi3_rule": card.metrics.get("baseline_spi3_rule"),
        "holdout_ci95": card.metrics.get("holdout_ci95"),
    }
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
