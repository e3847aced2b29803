"""Accepting inputs: store the bytes first, validate, then record an observation or a quarantine entry.

Every file goes to the content store before anything else, so even a refused input can be shown to an
auditor. A valid one becomes an ``observations`` row referencing its CID (unique per kind and CID: the
same bytes delivered again are a no-op); a refused one becomes a ``rejects`` row with the reason code
and message, and nothing else is touched — the worker keeps going.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.raster import read_raster
from ingest.regions import parse_regions
from ingest.weather import read_weather_csv, read_weather_json
from oracle.errors import ValidationError
from oracle.reports import subject_id
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import Region
from oracle.storage.tables import Blob, Observation, Reject

log = logging.getLogger(__name__)

Cadence = Literal["monthly", "daily"]


@dataclass(frozen=True)
class IngestOutcome:
    cid: str
    accepted: bool
    observation_id: int | None = None
    duplicate: bool = False
    reason: str = ""
    message: str = ""


def period_of(t: dt.datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}"


def _blob(session: Session, cid: str, size: int, media_type: str) -> None:
    if session.get(Blob, cid) is None:
        session.add(Blob(cid=cid, size=size, media_type=media_type))
        session.flush()


def _reject(
    session: Session, *, source: str, cid: str, error: ValidationError, meta: dict[str, Any]
) -> IngestOutcome:
    session.add(Reject(source=source, reason=error.reason, message=str(error), cid=cid, meta=meta))
    session.commit()
    log.warning("quarantined %s input cid=%s reason=%s: %s", source, cid, error.reason, error)
    return IngestOutcome(cid=cid, accepted=False, reason=error.reason, message=str(error))


def ingest_raster(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    data: bytes,
    *,
    variable: str,
    source: str = "",
    name: str = "",
    units: str | None = None,
    cadence: Cadence = "monthly",
    observed_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> IngestOutcome:
    """Store and validate one raster of ``variable``; its time comes from the file or ``observed_at``."""
    cid = blobs.put(data)
    meta: dict[str, Any] = {"name": name, "variable": variable, "cadence": cadence, "source_units": units}
    with sessions() as s:
        _blob(s, cid, len(data), "image/tiff" if data[:2] in (b"II", b"MM") else "application/x-netcdf")
        existing = s.scalar(select(Observation).where(Observation.kind == "raster", Observation.cid == cid))
        if existing is not None:
            return IngestOutcome(cid=cid, accepted=True, observation_id=existing.id, duplicate=True)
        try:
            grid = read_raster(data, variable=variable, name=name or cid, units=units, now=now)
            when = grid.time or observed_at
            if when is None:
                raise ValidationError(
                    f"{name or cid}: no time stamp in the file and none given", reason="missing_time"
                )
            if grid.valid_count == 0:
                raise ValidationError(f"{name or cid}: every pixel is nodata", reason="all_nodata")
        except ValidationError as e:
            s.rollback()
            _blob(s, cid, len(data), "application/octet-stream")
            return _reject(s, source="raster", cid=cid, error=e, meta=meta)
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        obs = Observation(
            kind="raster",
            variable=variable,
            cid=cid,
            source=source,
            observed_at=when,
            meta=meta
            | {
                "period": period_of(when),
                "date": when.date().isoformat(),
                "units": grid.units,
                "crs": grid.crs,
                "shape": list(grid.shape),
                "nodata_count": grid.nodata_count,
                "out_of_range_count": grid.out_of_range_count,
            },
        )
        s.add(obs)
        s.commit()
        return IngestOutcome(cid=cid, accepted=True, observation_id=obs.id)


def ingest_weather(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    data: bytes,
    *,
    variable: str,
    source: str = "",
    name: str = "",
    units: str | None = None,
    now: dt.datetime | None = None,
) -> IngestOutcome:
    """Store and validate a weather feed (CSV or JSON series per region or station)."""
    cid = blobs.put(data)
    meta: dict[str, Any] = {"name": name, "variable": variable}
    with sessions() as s:
        _blob(s, cid, len(data), "text/csv")
        existing = s.scalar(select(Observation).where(Observation.kind == "weather", Observation.cid == cid))
        if existing is not None:
            return IngestOutcome(cid=cid, accepted=True, observation_id=existing.id, duplicate=True)
        try:
            table = read_weather(data, variable=variable, units=units, now=now)
        except ValidationError as e:
            return _reject(s, source="weather", cid=cid, error=e, meta=meta)
        frame = table.data
        last = frame.index.max().to_pydatetime().replace(tzinfo=dt.UTC)
        obs = Observation(
            kind="weather",
            variable=variable,
            cid=cid,
            source=source,
            observed_at=last,
            meta=meta
            | {
                "stations": [str(c) for c in frame.columns],
                "first": frame.index.min().date().isoformat(),
                "last": last.date().isoformat(),
                "frequency": str(table.frequency),
                "units": table.units,
            },
        )
        s.add(obs)
        s.commit()
        return IngestOutcome(cid=cid, accepted=True, observation_id=obs.id)


def read_weather(
    data: bytes, *, variable: str, units: str | None = None, now: dt.datetime | None = None
) -> Any:
    """The feed's WeatherTable: JSON when the bytes look like JSON, CSV otherwise."""
    if data.lstrip()[:1] in (b"{", b"["):
        return read_weather_json(data, variable=variable, units=units, now=now)
    return read_weather_csv(data, variable=variable, units=units, now=now)


def add_regions(sessions: sessionmaker[Session], blobs: BlobStore, data: bytes) -> list[str]:
    """Register the regions of a GeoJSON FeatureCollection (property ``region_id``); each feature's
    canonical GeoJSON is stored as a blob, its CID becomes an input of every decision about it."""
    import json

    import shapely.geometry

    regions = parse_regions(data)
    added = []
    with sessions() as s:
        for region in regions:
            geometry = shapely.geometry.mapping(region.geometry)
            feature = {"type": "Feature", "properties": {"region_id": region.region_id}, "geometry": geometry}
            raw = json.dumps(feature, sort_keys=True, separators=(",", ":")).encode()
            cid = blobs.put(raw)
            _blob(s, cid, len(raw), "application/geo+json")
            row = s.get(Region, region.region_id)
            if row is None:
                s.add(
                    Region(
                        region_id=region.region_id,
                        subject="0x" + subject_id("region", region.region_id).hex(),
                        name=str(region.properties.get("name", region.region_id)),
                        geometry=json.loads(json.dumps(geometry)),
                        properties=dict(region.properties),
                        cid=cid,
                    )
                )
            elif row.cid != cid:
                raise ValidationError(
                    f"region {region.region_id} already exists with a different geometry; "
                    "regions are immutable once policies may depend on them",
                    reason="region_conflict",
                )
            added.append(region.region_id)
        s.commit()
    return added
