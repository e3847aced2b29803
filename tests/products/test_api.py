"""``GET /v1/products`` and ``/v1/products/{id}`` over the real app, with the API tests' fixtures."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from oracle.context import Context
from oracle.products.catalog import find_product, products_dir, reference_backtest
from oracle.products.terms import product_hash
from tests.api.conftest import Keys, client, ctx, keys  # noqa: F401 (fixtures)
from tests.products.helpers import januaries, january_terms, write_product


def test_lists_the_shipped_products_with_hash_and_backtest(client: TestClient, keys: Keys) -> None:  # noqa: F811
    r = client.get("/v1/products", headers=keys.header("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [p["id"] for p in body["items"]]
    assert "drought-maize-seasonal" in ids
    assert body["total"] == len(ids)
    maize = next(p for p in body["items"] if p["id"] == "drought-maize-seasonal")
    product = find_product("drought-maize-seasonal", products_dir())
    figures = reference_backtest(product)
    assert figures is not None
    assert maize["hash"] == product_hash(product.terms)
    assert maize["backtest"]["burn_cost"] == figures.burn_cost
    assert maize["backtest"]["payout_1_in_20"] == figures.payout_1_in_20
    assert maize["terms"]["windows"][1]["name"] == "flowering"

    one = client.get("/v1/products/drought-maize-seasonal", headers=keys.header("viewer"))
    assert one.status_code == 200
    assert one.json() == maize


def test_unknown_product_is_404_and_a_key_is_needed(client: TestClient, keys: Keys) -> None:  # noqa: F811
    r = client.get("/v1/products/no-such-product", headers=keys.header("viewer"))
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/products").status_code == 401
    assert client.get("/v1/products/Bad!", headers=keys.header("viewer")).status_code == 422


def test_bad_files_are_left_out_and_a_missing_series_is_reported(
    client: TestClient,  # noqa: F811
    keys: Keys,  # noqa: F811
    ctx: Context,  # noqa: F811
    tmp_path: Path,
) -> None:
    folder = tmp_path / "products"
    folder.mkdir()
    januaries(folder / "jan.csv", 2000, [40, 150, 150, 150])
    write_product(folder, january_terms(pricing={"loading": 0.5, "reference_series": "jan.csv"}))
    write_product(folder, january_terms(id="lost", pricing={"loading": 0.5, "reference_series": "gone.csv"}))
    (folder / "broken.yaml").write_text("id: broken\n", encoding="utf-8")
    ctx.extras["products_dir"] = folder
    items = client.get("/v1/products", headers=keys.header("viewer")).json()["items"]
    assert [p["id"] for p in items] == ["jan-rain", "lost"]
    # Januaries 40, 150, 150, 150 pay 1000, 0, 0, 0: mean 250 of a 1,000 limit.
    assert items[0]["backtest"]["burn_cost"] == 0.25
    assert items[0]["backtest_error"] is None
    assert items[1]["backtest"] is None
    assert "reference_series: no file" in items[1]["backtest_error"]
