"""docs/products.md reports the shipped products as they are: their hash and reference figures."""

from __future__ import annotations

from pathlib import Path

from oracle.products.catalog import load_product, product_files, products_dir, reference_backtest
from oracle.products.report import token_units

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_report_in_the_docs_matches_the_shipped_products() -> None:
    text = (DOCS / "products.md").read_text(encoding="utf-8")
    for path in product_files(products_dir()):
        product = load_product(path)
        figures = reference_backtest(product)
        assert figures is not None
        assert figures.seasons >= 40
        assert figures.product_hash in text, product.terms.id
        for shown in (
            f"{figures.burn_cost:.4f}",
            f"{figures.payout_frequency:.4f}",
            token_units(figures.pure_premium).removesuffix(" tUSD"),
            token_units(figures.payout_1_in_20).removesuffix(" tUSD"),
        ):
            assert shown in text, (product.terms.id, shown)
        assert (DOCS / "img" / f"{product.terms.id}-backtest.png").is_file()
