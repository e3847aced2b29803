"""The drought CLI commands end to end through Typer: SPI CSV in, CSV out; bad input exits 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from models.drought.severity import DroughtSeverityModel
from models.drought.spi import spi
from models.drought.synthetic import SyntheticConfig, generate
from models.registry import list_models, load_model
from oracle.commands.drought import spi_command, train_drought_command

os.environ.setdefault("CLIMATE_INDICES_LOG_LEVEL", "ERROR")


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("spi")(spi_command)
    app.command("train")(train_drought_command)
    return app


@pytest.fixture
def monthly_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(8)
    dates = pd.date_range("1991-03-01", periods=12 * 25, freq="MS")
    precip = np.round(rng.gamma(1.5, 40.0, dates.size), 1)
    precip[rng.random(dates.size) < 0.1] = 0.0
    path = tmp_path / "rain.csv"
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "precip_mm": precip}).to_csv(path, index=False)
    return path


def test_spi_end_to_end(cli: typer.Typer, monthly_csv: Path) -> None:
    result = CliRunner().invoke(
        cli, ["spi", "--input", str(monthly_csv), "--scale", "3", "--calibration", "1992-2010"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "date,spi"
    assert len(lines) == 1 + 12 * 25
    assert lines[1] == "1991-03-01,"
    assert lines[2] == "1991-04-01,"
    source = pd.read_csv(monthly_csv)
    expected = spi(
        source["precip_mm"].to_numpy(), scale=3, calibration=(1992, 2010), start_year=1991, start_month=3
    )
    printed = np.array([float(line.split(",")[1]) for line in lines[3:]])
    np.testing.assert_allclose(printed, expected[2:], atol=5e-7)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda f: f.rename(columns={"precip_mm": "precip_in"}),
            "missing column 'precip_mm' (found 'precip_in'",
        ),
        (lambda f: f.drop(columns=["date"]), "missing column 'date'"),
        (lambda f: f.drop(index=[5]), "consecutive months"),
        (
            lambda f: f.assign(
                date=pd.date_range("2000-01-01", periods=len(f), freq="D").strftime("%Y-%m-%d")
            ),
            "consecutive months",
        ),
        (lambda f: f.assign(date=["not a date"] * len(f)), "unparseable dates"),
        (lambda f: f.assign(precip_mm=f["precip_mm"].where(f.index != 7, -3.0)), "negative precipitation"),
        (lambda f: f.assign(precip_mm=f["precip_mm"] * 1000), "not millimetres"),
        (lambda f: f.assign(precip_mm=["x"] * len(f)), "non-numeric"),
    ],
)
def test_spi_bad_input_exits_2_with_one_line(
    cli: typer.Typer, monthly_csv: Path, mutate, message: str
) -> None:  # type: ignore[no-untyped-def]
    frame = mutate(pd.read_csv(monthly_csv))
    frame.to_csv(monthly_csv, index=False)
    result = CliRunner().invoke(cli, ["spi", "--input", str(monthly_csv), "--scale", "3"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_spi_bad_calibration_and_missing_file(cli: typer.Typer, monthly_csv: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["spi", "--input", str(monthly_csv), "--scale", "3", "--calibration", "1990"]
    )
    assert result.exit_code == 2
    assert "YYYY-YYYY" in result.stderr
    result = CliRunner().invoke(
        cli, ["spi", "--input", str(monthly_csv), "--scale", "3", "--calibration", "2050-2060"]
    )
    assert result.exit_code == 2
    assert "outside the record" in result.stderr
    result = CliRunner().invoke(cli, ["spi", "--input", str(monthly_csv), "--scale", "0"])
    assert result.exit_code == 2
    assert "scale" in result.stderr
    result = CliRunner().invoke(cli, ["spi", "--input", str(tmp_path / "missing.csv"), "--scale", "1"])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_train_from_labelled_csv(cli: typer.Typer, tmp_path: Path) -> None:
    labelled = generate(SyntheticConfig(n_regions=8, n_years=15, seed=5)).drop(
        columns=["drought_blend", "precip_mm"]
    )
    data = tmp_path / "labelled.csv"
    labelled.to_csv(data, index=False)
    out = tmp_path / "registry"
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["metrics"]["macro_f1"] > 0.3
    (card,) = list_models(out)
    assert "0x" + card.model_id_hex == summary["model_id"]
    artifact, _ = load_model(out, card.model_id_hex)
    assert len(DroughtSeverityModel.load(artifact).predict(labelled.tail(3))) == 3
    # Same data, same seed: the same model id again.
    again = CliRunner().invoke(
        cli, ["train", "--data", str(data), "--out", str(tmp_path / "r2"), "--seed", "1"]
    )
    assert json.loads(again.stdout)["model_id"] == summary["model_id"]


def test_train_bad_data_exits_2(cli: typer.Typer, tmp_path: Path) -> None:
    data = tmp_path / "labelled.csv"
    pd.DataFrame({"date": ["2020-01-01"] * 300, "spi_3": [0.0] * 300}).to_csv(data, index=False)
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "usdm_class" in result.stderr
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        cli, ["train", "--data", str(tmp_path / "x.json"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert ".csv or .parquet" in result.stderr
