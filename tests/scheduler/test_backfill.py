"""``oracle backfill drought`` over the synthetic world: progress with counts, one line per region-period,
errors for bad arguments, failures counted without stopping the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from oracle.commands.backfill import app
from oracle.context import Context
from oracle.storage.decision_tables import Decision


def _invoke(world: Context, *args: str) -> tuple[int, str, str]:
    env = {"ORACLE_DATA_DIR": str(world.settings.data_dir), "ORACLE_DATABASE_URL": ""}
    result = CliRunner().invoke(app, ["drought", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_backfill_evaluates_every_region_period_and_shows_counts(world: Context) -> None:
    code, out, err = _invoke(world, "--from", "2026-05", "--to", "2026-06")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1] == "2 complete, 2 incomplete, 0 failed"
    by_key = {tuple(line.split()[:2]): line for line in lines[:-1]}
    assert set(by_key) == {("2026-05", "dry"), ("2026-05", "wet"), ("2026-06", "dry"), ("2026-06", "wet")}
    assert " incomplete: ndvi for 2026-05" in by_key[("2026-05", "dry")]
    assert " complete: severity " in by_key[("2026-06", "dry")]
    # The progress bar (stderr) ends at 4/4 with the same counts.
    assert "4/4" in err
    assert "2 complete" in err
    assert "2 incomplete" in err
    assert "0 failed" in err
    with world.sessions() as s:
        rows = s.scalars(select(Decision).where(Decision.kind == "drought")).all()
        assert sorted((d.period, d.subject_name, d.status) for d in rows) == [
            ("2026-05", "dry", "incomplete"),
            ("2026-05", "wet", "incomplete"),
            ("2026-06", "dry", "complete"),
            ("2026-06", "wet", "complete"),
        ]
        dry = next(d for d in rows if d.subject_name == "dry" and d.status == "complete")
        wet = next(d for d in rows if d.subject_name == "wet" and d.status == "complete")
        assert dry.value is not None
        assert wet.value is not None
        assert int(dry.value) > int(wet.value)  # the dry region is the one in drought


def test_backfill_of_one_region_with_failures_counts_them_and_exits_1(world: Context, tmp_path: Path) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    code, out, err = _invoke(
        world, "--from", "2026-05", "--to", "2026-06", "--region", "dry", "--model-dir", str(empty)
    )
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[-1] == "0 complete, 1 incomplete, 1 failed"
    assert lines[1].startswith("2026-06 dry failed: no drought model in")
    assert "1 failed" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-07", "--to", "2026-06"], "--from 2026-07 is after --to 2026-06"),
        (["--from", "2026-13", "--to", "2026-06"], "period '2026-13' must be YYYY-MM"),
        (["--from", "2026-01", "--to", "2026-02", "--region", "atlantis"], "unknown region(s): atlantis"),
        (["--from", "2026-01", "--to", "2026-02", "--post"], "--post needs ORACLE_SIGNER_URL"),
    ],
)
def test_bad_arguments_are_one_line_errors(world: Context, args: list[str], message: str) -> None:
    code, out, err = _invoke(world, *args)
    assert code == 2
    assert err.strip() == f"error: {message}" or err.strip().startswith(f"error: {message}")
    assert "Traceback" not in err + out
