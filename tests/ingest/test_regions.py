"""GeoJSON region parsing and its refusal reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest
from shapely.geometry import Point, Polygon, box, mapping

from ingest.regions import parse_regions, regions_fingerprint
from oracle.errors import ValidationError
from tests.fixtures.rasters import region_feature_collection


def _reason(doc: Any) -> str:
    with pytest.raises(ValidationError) as err:
        parse_regions(doc)
    return err.value.reason


def test_polygons_and_multipolygons_parse_with_their_properties() -> None:
    doc = region_feature_collection({"kitui": box(37.5, -2.0, 38.5, -1.0)})
    doc["features"][0]["properties"]["county"] = "Kitui"
    multi = {
        "type": "MultiPolygon",
        "coordinates": [
            mapping(box(36, 0, 36.2, 0.2))["coordinates"],
            mapping(box(36.5, 0, 36.7, 0.2))["coordinates"],
        ],
    }
    doc["features"].append({"type": "Feature", "properties": {"region_id": 17}, "geometry": multi})
    regions = parse_regions(json.dumps(doc).encode())
    assert [r.region_id for r in regions] == ["kitui", "17"]
    assert regions[0].properties == {"county": "Kitui"}
    assert regions[1].geometry.area == pytest.approx(0.08)


def test_a_bow_tie_is_repaired_into_its_two_triangles() -> None:
    bow = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    assert not bow.is_valid
    (region,) = parse_regions(region_feature_collection({"bow": bow}))
    assert region.geometry.is_valid
    assert region.geometry.area == pytest.approx(0.5)


def test_refusals() -> None:
    ok = mapping(box(36, 0, 37, 1))
    feat = lambda props, geom=ok: {"type": "Feature", "properties": props, "geometry": geom}  # noqa: E731
    fc = lambda *features: {"type": "FeatureCollection", "features": list(features)}  # noqa: E731
    assert _reason(b"{not json") == "bad_geojson"
    assert _reason({"type": "Feature"}) == "bad_geojson"
    assert _reason(fc()) == "empty_collection"
    assert _reason(fc(feat({"region_id": "a"}, mapping(Point(36, 0))))) == "bad_geometry_type"
    assert _reason(fc(feat({"name": "a"}))) == "missing_region_id"
    assert _reason(fc(feat({"region_id": "  "}))) == "missing_region_id"
    assert _reason(fc(feat({"region_id": "a"}), feat({"region_id": "a"}))) == "duplicate_region_id"
    assert _reason(fc(feat({"region_id": "a"}, mapping(box(200, 0, 201, 1))))) == "coordinates_out_of_range"
    assert _reason(fc(feat({"region_id": "a"}, mapping(box(36, 95, 37, 96))))) == "coordinates_out_of_range"
    flat = {"type": "Polygon", "coordinates": [[[36, 0], [37, 0], [38, 0], [36, 0]]]}
    assert _reason(fc(feat({"region_id": "a"}, flat))) in ("invalid_geometry", "empty_geometry")
    assert (
        _reason(fc(feat({"region_id": "a"}, {"type": "Polygon", "coordinates": [[[36, 0]]]})))
        == "invalid_geometry"
    )


def test_fingerprint_changes_with_geometry_and_ids() -> None:
    a = parse_regions(region_feature_collection({"a": box(36, 0, 37, 1)}))
    b = parse_regions(region_feature_collection({"a": box(36, 0, 37, 1.01)}))
    c = parse_regions(region_feature_collection({"c": box(36, 0, 37, 1)}))
    assert len({regions_fingerprint(a), regions_fingerprint(b), regions_fingerprint(c)}) == 3
    assert regions_fingerprint(a) == regions_fingerprint(
        parse_regions(region_feature_collection({"a": box(36, 0, 37, 1)}))
    )
