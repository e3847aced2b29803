"""``oracle products ...`` as a user runs it: a real process, stdout parsed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from oracle.products.backtest import backtest
from oracle.products.catalog import find_product
from oracle.products.evaluate import run_product
from oracle.products.series import read_monthly_series
from tests.products.helpers import januaries, january_terms, write_product

ORACLE = [str(Path(sys.executable).with_name("oracle"))]


def _oracle(*args: str, cwd: Path, products: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    if products is not None:
        env["ORACLE_PRODUCTS_DIR"] = str(products)
    return subprocess.run([*ORACLE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_backtest_json_is_one_object_and_writes_chart_and_report(tmp_path: Path) -> None:
    product = write_product(tmp_path, january_terms())
    series = januaries(tmp_path / "s.csv", 2000, [40, 55, 70, 85, 95] + [150] * 15)
    r = _oracle(
        "products", "backtest", str(product), "--series", str(series), "--json", "--out", "out", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    for key in (
        "payout_frequency",
        "burn_cost",
        "pure_premium",
        "loaded_premium",
        "payout_1_in_10",
        "payout_1_in_20",
        "worst_years",
    ):
        assert key in figures
    assert figures["burn_cost"] == 0.145
    assert figures["payout_1_in_20"] == 900
    assert (tmp_path / "out" / "jan-rain-backtest.png").is_file()
    assert (tmp_path / "out" / "jan-rain-backtest.html").is_file()
    assert "jan-rain-backtest.png" in r.stderr


def test_reference_backtest_of_a_shipped_product_matches_the_library(tmp_path: Path) -> None:
    r = _oracle(
        "products", "backtest", "drought-maize-seasonal", "--json", "--out", str(tmp_path), cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    product = find_product("drought-maize-seasonal")
    assert product.reference_series is not None
    expected = backtest(run_product(product.terms, read_monthly_series(product.reference_series))).as_json()
    assert json.loads(r.stdout) == json.loads(json.dumps(expected))
    assert expected["seasons"] >= 40


def test_basis_risk_json(tmp_path: Path) -> None:
    product = write_product(tmp_path, january_terms())
    series = januaries(tmp_path / "s.csv", 2000, [150, 90, 75, 150])
    (tmp_path / "l.csv").write_text("period,loss\n2000,0\n2001,100\n2002,800\n2003,300\n", encoding="utf-8")
    r = _oracle(
        "products",
        "basis-risk",
        "jan-rain",
        "--series",
        str(series),
        "--losses",
        "l.csv",
        "--json",
        cwd=tmp_path,
        products=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["false_negative_rate"] == 1 / 3
    assert result["share_of_losses_covered"] == 0.5
    assert product.is_file()


def test_list_and_show(tmp_path: Path) -> None:
    write_product(tmp_path, january_terms())
    (tmp_path / "broken.yaml").write_text("id: broken\n", encoding="utf-8")
    r = _oracle("products", "list", "--json", cwd=tmp_path, products=tmp_path)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)["products"]
    assert [p.get("id") for p in listed] == [None, "jan-rain"]
    assert "name: Field required" in listed[0]["error"]
    shown = json.loads(
        _oracle("products", "show", "jan-rain", "--json", cwd=tmp_path, products=tmp_path).stdout
    )
    assert shown["hash"] == listed[1]["hash"]
    assert shown["terms"]["trigger"] == 100.0


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    product = write_product(tmp_path, january_terms(limit=-1))
    r = _oracle("products", "backtest", str(product), "--series", "s.csv", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "limit: Input should be greater than 0" in r.stderr
    good = write_product(tmp_path, january_terms(id="good"))
    r = _oracle("products", "backtest", str(good), "--series", "missing.csv", cwd=tmp_path)
    assert r.returncode == 1
    assert "missing.csv: no such file" in r.stderr
    assert "Traceback" not in r.stderr
