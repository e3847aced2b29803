"""The product catalogue: the product files in one folder (by default the repository's ``products/``).

A product's file is named after its id (``<id>.yaml``, ``<id>.yml`` or ``<id>.json``). The folder is
``ORACLE_PRODUCTS_DIR`` when set.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from oracle.errors import NotFound, ValidationError
from oracle.products.backtest import BacktestFigures, backtest
from oracle.products.evaluate import run_product
from oracle.products.series import read_monthly_series
from oracle.products.terms import ProductTerms, load_terms

SUFFIXES = (".yaml", ".yml", ".json")


def products_dir() -> Path:
    given = os.environ.get("ORACLE_PRODUCTS_DIR")
    return Path(given) if given else Path(__file__).resolve().parents[2] / "products"


@dataclass(frozen=True)
class Product:
    path: Path
    terms: ProductTerms

    @property
    def reference_series(self) -> Path | None:
        ref = self.terms.pricing.reference_series
        return None if ref is None else (self.path.parent / ref)


def load_product(path: Path) -> Product:
    """Read and validate one product file. :raises ValidationError: bad file, or id ≠ file name."""
    terms = load_terms(path)
    if terms.id != path.stem:
        raise ValidationError(
            f"{path}: id: {terms.id!r} must match the file name ({path.stem!r})", reason="bad_product"
        )
    return Product(path=path, terms=terms)


def product_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def find_product(name: str, root: Path | None = None) -> Product:
    """``name`` is a product file's path or a product id in ``root`` (default :func:`products_dir`).

    :raises NotFound: no such file or id. :raises ValidationError: the file is bad.
    """
    given = Path(name)
    if given.suffix.lower() in SUFFIXES and given.exists():
        return load_product(given)
    folder = root or products_dir()
    for suffix in SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return load_product(candidate)
    raise NotFound(f"no product {name!r} (neither a product file nor an id in {folder})")


def reference_backtest(product: Product) -> BacktestFigures | None:
    """The figures over the product's reference series (None if it names none); cached per file state.

    :raises ValidationError: the reference series is missing or bad.
    """
    series = product.reference_series
    if series is None:
        return None
    try:
        stamp = (product.path.stat().st_mtime_ns, series.stat().st_mtime_ns)
    except FileNotFoundError:
        raise ValidationError(
            f"{product.path}: pricing.reference_series: no file {series}", reason="not_found"
        ) from None
    return _cached_backtest(product.path, series, stamp)


@functools.lru_cache(maxsize=64)
def _cached_backtest(path: Path, series: Path, _stamp: tuple[int, int]) -> BacktestFigures:
    return backtest(run_product(load_product(path).terms, read_monthly_series(series)))
