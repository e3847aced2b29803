"""``oracle products list|show|backtest|basis-risk``: product terms, burn analysis and basis risk.

PRODUCT is a product file's path or a product id in ``products/`` (``ORACLE_PRODUCTS_DIR``).
``--series`` defaults to the product's ``pricing.reference_series``. With ``--json`` stdout carries
exactly one JSON object (file paths and notes go to stderr). Bad input: one line on stderr, exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from oracle.products.catalog import Product
    from oracle.products.evaluate import Run

HELP = "Insurance products: terms and hash, burn analysis (backtest) and basis risk."

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

ProductArg = Annotated[str, typer.Argument(help="product file, or product id in products/")]
SeriesOpt = Annotated[
    Path | None,
    typer.Option("--series", help="CSV period,value of monthly values (default: the product's reference)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _product(name: str) -> Product:
    from oracle.products.catalog import find_product

    return find_product(name)


def _run(product: Product, series: Path | None) -> Run:
    from oracle.errors import ValidationError
    from oracle.products.evaluate import run_product
    from oracle.products.series import read_monthly_series

    path = series or product.reference_series
    if path is None:
        raise ValidationError(
            f"product {product.terms.id} names no pricing.reference_series: pass --series FILE",
            reason="no_series",
        )
    return run_product(product.terms, read_monthly_series(path))


def _print_json(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(obj, sort_keys=True))


@app.command("list")
def list_products(json_out: JsonOpt = False) -> None:
    """The products in products/, with their hash (a bad file is listed with its error)."""
    from oracle.errors import ValidationError
    from oracle.products.catalog import load_product, product_files, products_dir
    from oracle.products.terms import product_hash

    items: list[dict[str, Any]] = []
    for path in product_files(products_dir()):
        try:
            p = load_product(path)
        except ValidationError as e:
            items.append({"file": str(path), "error": str(e)})
            continue
        items.append(
            {
                "id": p.terms.id,
                "name": p.terms.name,
                "version": p.terms.version,
                "hash": product_hash(p.terms),
            }
        )
    if json_out:
        _print_json({"products": items})
        return
    for item in items:
        if "error" in item:
            typer.echo(f"{item['file']}  INVALID: {item['error']}")
        else:
            typer.echo(f"{item['id']:32} v{item['version']}  {item['hash']}  {item['name']}")


@app.command("show")
def show(product: ProductArg, json_out: JsonOpt = False) -> None:
    """A product's validated terms and its hash (keccak256 of the canonical JSON)."""
    from oracle.products.terms import canonical_json, product_hash

    p = _product(product)
    if json_out:
        _print_json({"hash": product_hash(p.terms), "terms": p.terms.model_dump(mode="json")})
        return
    typer.echo(f"hash       {product_hash(p.terms)}")
    typer.echo(f"canonical  {canonical_json(p.terms).decode('utf-8')}")


@app.command("backtest")
def backtest_command(
    product: ProductArg,
    series: SeriesOpt = None,
    json_out: JsonOpt = False,
    out: Annotated[
        Path, typer.Option("--out", help="folder for <id>-backtest.png and <id>-backtest.html")
    ] = Path(),
) -> None:
    """Burn analysis over an index history: payout frequency, burn cost, premiums, 1-in-10/20 payouts."""
    from oracle.products.backtest import backtest
    from oracle.products.report import figures_rows, write_report

    p = _product(product)
    run = _run(p, series)
    fig = backtest(run)
    chart, page = write_report(run, fig, out)
    if json_out:
        _print_json(fig.as_json())
        typer.echo(f"chart {chart}\nreport {page}", err=True)
        return
    typer.echo(f"{p.terms.name} ({fig.product_hash})")
    for label, value in figures_rows(fig):
        typer.echo(f"  {label:18} {value}")
    for w in fig.worst_years:
        typer.echo(f"  worst {w['season']}  {w['payout']}")
    typer.echo(f"chart {chart}\nreport {page}")


@app.command("basis-risk")
def basis_risk_command(
    product: ProductArg,
    losses: Annotated[Path, typer.Option("--losses", help="CSV period,loss (YYYY season or YYYY-MM)")],
    series: SeriesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """False-negative and false-positive rates, correlation and share of losses covered."""
    from oracle.products.basis import basis_risk
    from oracle.products.series import read_losses

    p = _product(product)
    result = basis_risk(_run(p, series), read_losses(losses))
    if json_out:
        _print_json(result.as_json())
        return
    for key, value in result.as_json().items():
        shown = f"{value:.4f}" if isinstance(value, float) else ("n/a" if value is None else str(value))
        typer.echo(f"{key:26} {shown}")
