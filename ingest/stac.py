"""STAC discovery: which raster assets exist for a collection, an area and a date range.

``discover_assets(source, ...)`` accepts

* a local path (or ``file://`` href) to a static catalog / collection JSON, walked with pystac;
* a local path to an ItemCollection (GeoJSON FeatureCollection of items);
* an ``http(s)://`` URL: opened with pystac-client; a STAC API that conforms to *item search* is
  searched server-side, a static catalog served over HTTP is walked.

Every document (the source, its children, items and search pages) is read through
:func:`ingest.fetch.fetch` under ``policy`` (default :class:`~ingest.fetch.FetchPolicy`: https to public
addresses only, no local files), so a link cannot lead to a local file outside the allowed root or to an
internal address, and no document is larger than the policy's cap. At most ``max_items`` items are looked
at (``too_many_items`` beyond: a server paginating forever stops here).

Filters always run here as well (a server's bbox/datetime semantics are not trusted blindly): items
of ``collections``, whose bbox intersects ``bbox`` (lon/lat), whose datetime (or
``start_datetime``…``end_datetime`` interval) overlaps [``start``, ``end``] (inclusive, UTC).

Errors: ``oracle.errors.NotFound`` for a missing local file; ValidationError ``bad_stac`` for JSON
that is not STAC, ``bad_bbox`` for an invalid bbox, ``stac_unreachable`` for an HTTP failure, and the
policy's reasons (``scheme_refused``, ``address_refused``, ``path_refused``, ``too_large``, ...; see
:mod:`ingest.fetch`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.fetch import FetchPolicy, fetch
from oracle.errors import NotFound, ValidationError

BBox = tuple[float, float, float, float]

#: Items looked at per discovery, before any filter: far above a real lookback window's worth.
MAX_ITEMS = 100_000


@dataclass(frozen=True)
class StacAsset:
    """One asset of one item: absolute ``href``, item time (UTC) and the item's properties."""

    item_id: str
    collection: str | None
    asset_key: str
    href: str
    media_type: str | None
    datetime: datetime | None
    bbox: BBox | None
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


def discover_assets(
    source: str | Path,
    *,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    asset_keys: Sequence[str] | None = None,
    policy: FetchPolicy | None = None,
    max_items: int = MAX_ITEMS,
) -> tuple[StacAsset, ...]:
    """Assets of the items in ``source`` that pass every filter, sorted by (datetime, item, asset)."""
    from ingest.stac_io import PolicyStacApiIO, PolicyStacIO

    box = _check_bbox(bbox)
    lo, hi = _utc(start), _utc(end)
    policy = policy or FetchPolicy()
    text = str(source)
    if text.lower().startswith(("http://", "https://")):
        items: Iterable[Any] = _api_items(text, collections, box, lo, hi, PolicyStacApiIO(policy))
    else:
        items = _local_items(text, PolicyStacIO(policy))
    found: list[StacAsset] = []
    for seen, item in enumerate(items, start=1):
        if seen > max_items:
            raise ValidationError(
                f"stac: {text} lists more than {max_items} items for this window", reason="too_many_items"
            )
        if collections is not None and item.collection_id not in collections:
            continue
        if box is not None and not _bbox_intersects(item.bbox, box):
            continue
        if not _time_overlaps(item, lo, hi):
            continue
        found.extend(_assets_of(item, asset_keys))
    epoch = datetime.min.replace(tzinfo=UTC)
    return tuple(sorted(found, key=lambda a: (a.datetime or epoch, a.item_id, a.asset_key)))


def _check_bbox(bbox: Sequence[float] | None) -> BBox | None:
    if bbox is None:
        return None
    if len(bbox) != 4:
        raise ValidationError(f"stac: bbox needs 4 numbers, got {len(bbox)}", reason="bad_bbox")
    west, south, east, north = (float(v) for v in bbox)
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise ValidationError(f"stac: bbox {list(bbox)} is not lon/lat (w, s, e, n)", reason="bad_bbox")
    return (west, south, east, north)


def _utc(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _local_items(source: str, io: Any) -> Iterator[Any]:
    import pystac
    from pystac.errors import STACError, STACTypeError

    path = source if source.lower().startswith("file:") else str(Path(source).absolute())
    raw = fetch(path, io.policy, max_bytes=io.policy.max_document_bytes)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"stac: {source} is not JSON ({exc})", reason="bad_stac") from exc
    try:
        if not isinstance(doc, dict):
            raise ValidationError(f"stac: {source} is not a JSON object", reason="bad_stac")
        kind = doc.get("type")
        if kind == "FeatureCollection":
            yield from pystac.ItemCollection.from_dict(doc, root=None).items
        elif kind == "Feature":
            yield pystac.Item.from_dict(doc, href=path)
        elif kind in ("Catalog", "Collection"):
            # from_file, not from_dict: it hands our I/O to the catalog, so every link is read through it.
            cls = pystac.Collection if kind == "Collection" else pystac.Catalog
            yield from cls.from_file(path, stac_io=io).get_items(recursive=True)
        else:
            raise ValidationError(f"stac: {source} is neither a catalog nor items", reason="bad_stac")
    except (STACError, STACTypeError, KeyError, TypeError, ValueError) as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError | NotFound):  # a link refused by the policy, or missing
            raise cause from None
        raise ValidationError(f"stac: {source} is not valid STAC ({exc})", reason="bad_stac") from exc


def _api_items(
    url: str,
    collections: Sequence[str] | None,
    box: BBox | None,
    lo: datetime | None,
    hi: datetime | None,
    io: Any,
) -> Iterator[Any]:
    from pystac_client import Client
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.warnings import PystacClientWarning

    try:
        with warnings.catch_warnings():
            # A static catalog served over HTTP has no conformance list: walking it is the intent.
            warnings.simplefilter("ignore", PystacClientWarning)
            client = Client.open(url, stac_io=io)
            if client.conforms_to(ConformanceClasses.ITEM_SEARCH):
                interval = None if lo is None and hi is None else (lo, hi)
                search = client.search(
                    collections=list(collections) if collections else None, bbox=box, datetime=interval
                )
                yield from search.items()
            else:
                yield from client.get_items(recursive=True)
    except (ValidationError, NotFound):
        raise
    except Exception as exc:  # requests, pystac and JSON errors all mean "this endpoint gave us nothing"
        cause = exc.__cause__
        if isinstance(cause, ValidationError | NotFound):  # a link refused by the policy, or missing
            raise cause from None
        raise ValidationError(
            f"stac: cannot read {url} ({type(exc).__name__}: {exc})", reason="stac_unreachable"
        ) from exc


def _bbox_intersects(item_bbox: Sequence[float] | None, box: BBox) -> bool:
    if not item_bbox:
        return False
    # 3-D bboxes list (w, s, zmin, e, n, zmax).
    w, s, e, n = (
        (item_bbox[0], item_bbox[1], item_bbox[3], item_bbox[4]) if len(item_bbox) == 6 else item_bbox[:4]
    )
    return not (e < box[0] or w > box[2] or n < box[1] or s > box[3])


def _time_overlaps(item: Any, lo: datetime | None, hi: datetime | None) -> bool:
    first, last = _item_interval(item)
    if first is None or last is None:
        return lo is None and hi is None
    return (hi is None or first <= hi) and (lo is None or last >= lo)


def _item_interval(item: Any) -> tuple[datetime | None, datetime | None]:
    if item.datetime is not None:
        when = _utc(item.datetime)
        return when, when
    props = item.properties
    start = props.get("start_datetime")
    end = props.get("end_datetime")
    if start and end:
        return _utc(datetime.fromisoformat(start.replace("Z", "+00:00"))), _utc(
            datetime.fromisoformat(end.replace("Z", "+00:00"))
        )
    return None, None


def _assets_of(item: Any, keys: Sequence[str] | None) -> Iterator[StacAsset]:
    first, _ = _item_interval(item)
    box = tuple(float(v) for v in item.bbox[:4]) if item.bbox and len(item.bbox) == 4 else None
    for key, asset in item.assets.items():
        if keys is not None and key not in keys:
            continue
        yield StacAsset(
            item_id=item.id,
            collection=item.collection_id,
            asset_key=key,
            href=asset.get_absolute_href() or asset.href,
            media_type=asset.media_type,
            datetime=first,
            bbox=box,  # type: ignore[arg-type]
            properties=dict(item.properties),
        )
