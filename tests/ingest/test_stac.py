"""STAC discovery on a real static catalog: local, over HTTP (pystac-client), and as an ItemCollection.

Reads here are allowed by a policy that admits the temp dir and loopback (the defaults refuse both: see
test_stac_guards.py)."""

from __future__ import annotations

import functools
import http.server
import json
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.fetch import FetchPolicy
from ingest.stac import discover_assets as discover
from oracle.errors import NotFound, ValidationError
from tests.fixtures.rasters import StacItemSpec, write_stac_catalog

KENYA = (33.9, -4.7, 41.9, 5.0)
SAHEL = (-5.0, 12.0, 5.0, 16.0)


def _items() -> list[StacItemSpec]:
    specs = []
    for day in (1, 2, 3):
        when = datetime(2024, 3, day, tzinfo=UTC)
        specs.append(
            StacItemSpec(
                f"chirps-ke-{day}", "chirps-daily", when, KENYA, f"data/chirps-ke-{day}.tif", {"gsd": 5550}
            )
        )
        specs.append(
            StacItemSpec(f"chirps-sahel-{day}", "chirps-daily", when, SAHEL, f"data/chirps-sahel-{day}.tif")
        )
        specs.append(
            StacItemSpec(f"ndvi-ke-{day}", "modis-ndvi", when, KENYA, f"https://example.org/ndvi-{day}.tif")
        )
    return specs


def discover_assets(source: str | Path, **kwargs: Any) -> tuple[Any, ...]:
    """Discovery under a policy that reads below the system temp dir and from loopback over http."""
    root = Path(tempfile.gettempdir())
    policy = FetchPolicy(file_root=root, allow_http=True, allowed_networks=("127.0.0.0/8",))
    return discover(source, policy=policy, **kwargs)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return write_stac_catalog(tmp_path / "stac", _items())


def test_filters_by_collection_bbox_and_dates(catalog: Path) -> None:
    assets = discover_assets(
        catalog,
        collections=["chirps-daily"],
        bbox=(36.0, -2.0, 38.0, 0.0),
        start=datetime(2024, 3, 2, tzinfo=UTC),
        end=datetime(2024, 3, 3, tzinfo=UTC),
    )
    assert [a.item_id for a in assets] == ["chirps-ke-2", "chirps-ke-3"]
    first = assets[0]
    assert first.collection == "chirps-daily"
    assert first.datetime == datetime(2024, 3, 2, tzinfo=UTC)
    assert first.href.startswith(str(catalog.parent))
    assert first.href.endswith("data/chirps-ke-2.tif")
    assert first.properties["gsd"] == 5550
    assert first.bbox == KENYA


def test_no_filters_returns_every_asset_and_bbox_excludes(catalog: Path) -> None:
    assert len(discover_assets(catalog)) == 9
    sahel = discover_assets(catalog, bbox=(0.0, 13.0, 1.0, 14.0))
    assert {a.item_id for a in sahel} == {"chirps-sahel-1", "chirps-sahel-2", "chirps-sahel-3"}
    ndvi = discover_assets(catalog, collections=["modis-ndvi"], end=datetime(2024, 3, 1))
    assert [a.href for a in ndvi] == ["https://example.org/ndvi-1.tif"]


def test_item_collection_file(tmp_path: Path, catalog: Path) -> None:
    import pystac

    items = list(pystac.Catalog.from_file(str(catalog)).get_items(recursive=True))
    path = tmp_path / "items.json"
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict(transform_hrefs=False)))
    found = discover_assets(path, collections=["modis-ndvi"], start=datetime(2024, 3, 3, tzinfo=UTC))
    assert [a.item_id for a in found] == ["ndvi-ke-3"]


@pytest.fixture
def served_catalog(catalog: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(catalog.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/catalog.json"
    finally:
        server.shutdown()
        server.server_close()


def test_catalog_over_http_through_pystac_client(served_catalog: str) -> None:
    assets = discover_assets(served_catalog, collections=["chirps-daily"], bbox=(36.0, -2.0, 38.0, 0.0))
    assert [a.item_id for a in assets] == ["chirps-ke-1", "chirps-ke-2", "chirps-ke-3"]
    assert assets[0].href.startswith("http://127.0.0.1:")


def test_errors(tmp_path: Path, served_catalog: str) -> None:
    with pytest.raises(NotFound):
        discover_assets(tmp_path / "nope.json")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(ValidationError) as err:
        discover_assets(junk)
    assert err.value.reason == "bad_stac"
    not_stac = tmp_path / "other.json"
    not_stac.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(ValidationError) as err:
        discover_assets(not_stac)
    assert err.value.reason == "bad_stac"
    with pytest.raises(ValidationError) as err:
        discover_assets(tmp_path, bbox=(0, 0, 1))
    assert err.value.reason == "bad_bbox"
    with pytest.raises(ValidationError) as err:
        discover_assets(served_catalog.replace("catalog.json", "missing.json"))
    assert err.value.reason == "stac_unreachable"
