"""``/v1/products``: the insurance products in ``products/``, their hash and their reference backtest.

``hash`` is the bytes32 the pool stores with each policy (keccak256 of the canonical JSON terms, see
:mod:`oracle.products.terms`). ``backtest`` holds the burn figures over the product's reference series
(``null`` with ``backtest_error`` set when that series is missing or bad). A product file that fails
validation is left out of the listing and logged.
"""

from __future__ import annotations

import logging
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel

from oracle.api.deps import CtxDep, PageDep, ViewerKey
from oracle.api.pagination import Page
from oracle.api.problems import problem_responses
from oracle.errors import NotFound, ValidationError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/products", tags=["products"], responses=problem_responses(401, 403, 422, 429))


class ProductPublic(BaseModel):
    id: str
    name: str
    version: int
    hash: str
    index_kind: str
    period_grid: str
    limit: int
    deductible: int
    hysteresis: bool
    loading: float
    terms: dict[str, Any]
    backtest: dict[str, Any] | None
    backtest_error: str | None


def _root(ctx: Any) -> FsPath:
    from oracle.products.catalog import products_dir

    given = ctx.extras.get("products_dir")
    return given if isinstance(given, FsPath) else products_dir()


def _public(path: FsPath) -> ProductPublic:
    from oracle.products.catalog import load_product, reference_backtest
    from oracle.products.terms import product_hash

    product = load_product(path)
    t = product.terms
    figures: dict[str, Any] | None = None
    error: str | None = None
    try:
        found = reference_backtest(product)
        figures = None if found is None else found.as_json()
    except ValidationError as e:
        error = str(e)
    return ProductPublic(
        id=t.id,
        name=t.name,
        version=t.version,
        hash=product_hash(t),
        index_kind=t.index.kind.value,
        period_grid=t.period_grid.value,
        limit=t.limit,
        deductible=t.deductible,
        hysteresis=t.hysteresis,
        loading=t.pricing.loading,
        terms=t.model_dump(mode="json"),
        backtest=figures,
        backtest_error=error,
    )


def _products(root: FsPath) -> list[ProductPublic]:
    from oracle.products.catalog import product_files

    found: list[ProductPublic] = []
    for path in product_files(root):
        try:
            found.append(_public(path))
        except ValidationError as e:
            log.warning("skipping product file %s: %s", path, e)
    return found


@router.get("", response_model=Page[ProductPublic])
def list_products(ctx: CtxDep, _: ViewerKey, page: PageDep) -> Page[ProductPublic]:
    """Products by id, each with its hash and reference backtest figures."""
    products = _products(_root(ctx))
    items = products[page.offset : page.offset + page.limit]
    nxt = page.offset + len(items)
    return Page[ProductPublic](
        items=items,
        total=len(products),
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt if nxt < len(products) else None,
    )


@router.get("/{product_id}", response_model=ProductPublic, responses=problem_responses(404))
def get_product(
    product_id: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")], ctx: CtxDep, _: ViewerKey
) -> ProductPublic:
    """One product by id; 404 when no valid product file has that id."""
    for product in _products(_root(ctx)):
        if product.id == product_id:
            return product
    raise NotFound(f"no product {product_id!r}")
