"""Insured regions from a GeoJSON FeatureCollection (EPSG:4326, lon/lat degrees).

Each feature is a Polygon or MultiPolygon with a ``region_id`` property. ``parse_regions`` refuses the
whole file (ValidationError) with one of these reasons:

``bad_geojson``              not JSON, or not a FeatureCollection of features
``empty_collection``         no features
``bad_geometry_type``        a geometry that is not a Polygon/MultiPolygon
``missing_region_id``        ``region_id`` absent or blank
``duplicate_region_id``      two features share an id
``coordinates_out_of_range`` a longitude outside −180…180 or a latitude outside −90…90
``invalid_geometry``         a geometry GEOS cannot parse, or cannot repair into a polygon
``empty_geometry``           a geometry with no area

Self-intersecting rings are repaired with ``shapely.make_valid`` (keeping the polygonal parts) because
hand-drawn insurance polygons often have them and the repaired area is what a human meant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from oracle.errors import ValidationError


@dataclass(frozen=True)
class Region:
    """An insured region: id, valid (Multi)Polygon in EPSG:4326 lon/lat, and its other properties."""

    region_id: str
    geometry: BaseGeometry = field(compare=False)
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


def parse_regions(data: bytes | str | Mapping[str, Any]) -> tuple[Region, ...]:
    """Parse and validate a GeoJSON FeatureCollection of insured regions (see module docstring)."""
    doc = _load(data)
    features = doc.get("features")
    if doc.get("type") != "FeatureCollection" or not isinstance(features, list):
        raise ValidationError("regions: expected a GeoJSON FeatureCollection", reason="bad_geojson")
    if not features:
        raise ValidationError("regions: the FeatureCollection has no features", reason="empty_collection")
    regions: list[Region] = []
    seen: set[str] = set()
    for index, feature in enumerate(features):
        region = _parse_feature(feature, index)
        if region.region_id in seen:
            raise ValidationError(
                f"regions: duplicate region_id {region.region_id!r}", reason="duplicate_region_id"
            )
        seen.add(region.region_id)
        regions.append(region)
    return tuple(regions)


def regions_fingerprint(regions: Sequence[Region]) -> str:
    """SHA-256 over ids and geometry WKB, in order: the region half of the zonal-weights cache key."""
    digest = hashlib.sha256()
    wkbs = shapely.to_wkb(
        np.array([r.geometry for r in regions], dtype=object), hex=False, output_dimension=2
    )
    for region, wkb in zip(regions, wkbs, strict=True):
        digest.update(region.region_id.encode())
        digest.update(b"\x00")
        digest.update(wkb)
    return digest.hexdigest()


def _load(data: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"regions: not JSON ({exc})", reason="bad_geojson") from exc
    if not isinstance(doc, dict):
        raise ValidationError("regions: expected a JSON object", reason="bad_geojson")
    return doc


def _parse_feature(feature: Any, index: int) -> Region:
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise ValidationError(f"regions: feature #{index} is not a GeoJSON Feature", reason="bad_geojson")
    props = feature.get("properties") or {}
    if not isinstance(props, Mapping):
        raise ValidationError(f"regions: feature #{index} properties are not an object", reason="bad_geojson")
    raw_id = props.get("region_id")
    region_id = str(raw_id).strip() if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else ""
    if not region_id:
        raise ValidationError(f"regions: feature #{index} has no region_id", reason="missing_region_id")
    geom_doc = feature.get("geometry")
    if not isinstance(geom_doc, Mapping) or geom_doc.get("type") not in ("Polygon", "MultiPolygon"):
        kind = geom_doc.get("type") if isinstance(geom_doc, Mapping) else type(geom_doc).__name__
        raise ValidationError(
            f"regions: {region_id}: geometry type {kind!r}; expected Polygon or MultiPolygon",
            reason="bad_geometry_type",
        )
    try:
        geom = shape(geom_doc)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise ValidationError(
            f"regions: {region_id}: unparseable geometry ({exc})", reason="invalid_geometry"
        ) from exc
    _check_coordinates(geom, region_id)
    geom = _repair(geom, region_id)
    other = {k: v for k, v in props.items() if k != "region_id"}
    return Region(region_id=region_id, geometry=geom, properties=MappingProxyType(other))


def _check_coordinates(geom: BaseGeometry, region_id: str) -> None:
    coords = shapely.get_coordinates(geom)
    if coords.size == 0:
        raise ValidationError(f"regions: {region_id}: empty geometry", reason="empty_geometry")
    if not np.isfinite(coords).all():
        raise ValidationError(
            f"regions: {region_id}: non-finite coordinates", reason="coordinates_out_of_range"
        )
    lon, lat = coords[:, 0], coords[:, 1]
    if (np.abs(lon) > 180.0).any() or (np.abs(lat) > 90.0).any():
        raise ValidationError(
            f"regions: {region_id}: coordinates outside lon −180…180 / lat −90…90 (EPSG:4326 expected)",
            reason="coordinates_out_of_range",
        )


def _repair(geom: BaseGeometry, region_id: str) -> BaseGeometry:
    if not geom.is_valid:
        fixed = shapely.make_valid(geom)
        polys = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon | MultiPolygon)]
        if not polys:
            raise ValidationError(
                f"regions: {region_id}: geometry cannot be repaired", reason="invalid_geometry"
            )
        geom = shapely.union_all(polys)
    if geom.is_empty or geom.area <= 0.0:
        raise ValidationError(f"regions: {region_id}: geometry has no area", reason="empty_geometry")
    return geom
