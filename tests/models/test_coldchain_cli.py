"""``mkt`` and ``train coldchain`` commands end to end through Typer, including refused input."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oracle.commands.coldchain import mkt_command

app = typer.Typer()
app.command("mkt")(mkt_command)
app.command("noop")(lambda: None)  # a second command keeps "mkt" as a named subcommand


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["mkt", *args])
    return result.exit_code, result.stdout, result.stderr


def test_mkt_reference_example(tmp_path: Path) -> None:
    lines = ["ts,temp_c"] + [f"2024-05-01T{h:02d}:00:00Z,{5.0 if h < 18 else 14.0}" for h in range(24)]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = run("--input", str(path))
    assert code == 0
    assert out.strip() == "8.29"
    code, out, _ = run("--input", str(path), "--dh-over-r", "5000")
    assert code == 0
    assert 7.0 < float(out) < 8.29


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("when,temp_c\n2024-05-01T00:00:00Z,5\n", "missing column 'ts'"),
        ("ts,temp_c\n", "no rows"),
        ("ts,temp_c\nyesterday,5\n", "ISO-8601"),
        ("ts,temp_c\n2024-05-01T00:00:00Z,warm\n", "line 2: temp_c is not a number"),
        ("ts,temp_c\n2024-05-01T01:00:00Z,5\n2024-05-01T00:00:00Z,5\n", "strictly increase"),
        ("ts,temp_c\n2024-05-01T00:00:00Z,-300\n", "absolute zero"),
    ],
)
def test_mkt_bad_input_is_one_line_exit_2(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, out, err = run("--input", str(path))
    assert code == 2
    assert out == ""
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_mkt_missing_file(tmp_path: Path) -> None:
    code, _, err = run("--input", str(tmp_path / "absent.csv"))
    assert code == 2
    assert "no such file" in err
