"""STAC polling: new raster assets in the configured catalogs become observations.

Each poll asks :func:`ingest.stac.discover_assets` for the assets of the last ``lookback_days`` of
every catalog, skips hrefs already ingested (an observation with that ``source``), fetches the rest
(local file or HTTP, with a timeout) and stores them with :func:`ingest.observations.ingest_raster`,
which validates and deduplicates by content. Each accepted new observation goes through
:func:`oracle.scheduler.hooks.on_new_observation`. A failing catalog or asset is logged and counted,
never fatal; with no catalogs configured a poll does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select

from oracle.context import Context
from oracle.errors import OracleError, ValidationError
from oracle.scheduler.options import SchedulerOptions, StacCatalog
from oracle.storage.tables import Observation

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 60.0
MAX_ASSET_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class StacPoll:
    """Counts of one poll over every catalog."""

    catalogs: int
    found: int
    ingested: int
    known: int
    rejected: int
    failed: int


def catalogs_of(ctx: Context, options: SchedulerOptions | None = None) -> tuple[StacCatalog, ...]:
    """``options.stac_catalogs``, else ``ctx.extras["stac_catalogs"]`` (a sequence of StacCatalog)."""
    if options is not None and options.stac_catalogs:
        return options.stac_catalogs
    given = ctx.extras.get("stac_catalogs")
    if isinstance(given, list | tuple) and all(isinstance(c, StacCatalog) for c in given):
        return tuple(given)
    return ()


def _fetch(href: str) -> bytes:
    if href.startswith(("http://", "https://")):
        try:
            resp = httpx.get(href, timeout=FETCH_TIMEOUT_S, follow_redirects=True)
            resp.raise_for_status()
        except httpx.HTTPError as e:
            raise ValidationError(f"{href}: {type(e).__name__}", reason="stac_unreachable") from None
        return resp.content
    path = Path(href.removeprefix("file://"))
    try:
        if path.stat().st_size > MAX_ASSET_BYTES:
            raise ValidationError(f"{href}: larger than {MAX_ASSET_BYTES} bytes", reason="too_large")
        return path.read_bytes()
    except OSError as e:
        raise ValidationError(f"{href}: {e.strerror}", reason="stac_unreachable") from None


def poll_stac(
    ctx: Context, *, options: SchedulerOptions | None = None, now: dt.datetime | None = None
) -> StacPoll:
    """One pass over the configured catalogs (see the module docstring)."""
    from ingest.observations import ingest_raster
    from ingest.stac import discover_assets
    from oracle.scheduler.hooks import on_new_observation

    catalogs = catalogs_of(ctx, options)
    now = now or dt.datetime.now(dt.UTC)
    found = ingested = known = rejected = failed = 0
    for catalog in catalogs:
        try:
            assets = discover_assets(
                catalog.source,
                collections=catalog.collections,
                bbox=catalog.bbox,
                start=now - dt.timedelta(days=catalog.lookback_days),
                end=now,
                asset_keys=catalog.asset_keys,
            )
        except OracleError as e:
            log.error("STAC catalog %s failed: %s", catalog.source, e)
            failed += 1
            continue
        found += len(assets)
        with ctx.sessions() as s:
            seen = set(
                s.scalars(
                    select(Observation.source).where(
                        Observation.kind == "raster", Observation.source.in_([a.href for a in assets])
                    )
                ).all()
            )
        for asset in assets:
            if asset.href in seen:
                known += 1
                continue
            try:
                out = ingest_raster(
                    ctx.sessions,
                    ctx.blobs,
                    _fetch(asset.href),
                    variable=catalog.variable,
                    source=asset.href,
                    name=f"{asset.item_id}:{asset.asset_key}",
                    units=catalog.units,
                    cadence=catalog.cadence,
                    observed_at=asset.datetime,
                )
            except OracleError as e:
                log.error("STAC asset %s failed: %s", asset.href, e)
                failed += 1
                continue
            if not out.accepted:
                log.warning("STAC asset %s refused: %s %s", asset.href, out.reason, out.message)
                rejected += 1
            elif out.duplicate:
                known += 1
            else:
                ingested += 1
                if out.observation_id is not None:
                    on_new_observation(ctx, out.observation_id)
    result = StacPoll(len(catalogs), found, ingested, known, rejected, failed)
    if catalogs:
        log.info("STAC poll: %s", result)
    return result
