"""STAC polling: new raster assets in the configured catalogs become observations.

Each poll asks :func:`ingest.stac.discover_assets` for the assets of the last ``lookback_days`` of
every catalog, skips hrefs already ingested (an observation with that ``source``), fetches the rest
and stores them with :func:`ingest.observations.ingest_raster`, which validates and deduplicates by
content. Each accepted new observation goes through :func:`oracle.scheduler.hooks.on_new_observation`.

Catalogs, their links and assets are read under the ``ORACLE_STAC_*`` settings
(:class:`ingest.fetch.FetchPolicy`): https only unless http is allowed, local files only under
``ORACLE_STAC_FILE_ROOT``, no loopback/link-local/private address unless allowed, capped sizes,
timeouts and a bounded number of redirects. A catalog or asset refused by that policy, or otherwise
refused as input, is counted (``refused``), logged and recorded as a reject (source ``stac``, the reason,
the href); other failures are logged and counted (``failed``). Neither is fatal; with no catalogs
configured a poll does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select

from oracle.context import Context
from oracle.errors import OracleError, ValidationError
from oracle.scheduler.options import SchedulerOptions, StacCatalog
from oracle.storage.tables import Observation, Reject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StacPoll:
    """Counts of one poll over every catalog."""

    catalogs: int
    found: int
    ingested: int
    known: int
    rejected: int
    failed: int
    refused: int = 0
    """Catalogs and assets not read: refused by the fetch policy or not usable as STAC."""


def catalogs_of(ctx: Context, options: SchedulerOptions | None = None) -> tuple[StacCatalog, ...]:
    """``options.stac_catalogs``, else ``ctx.extras["stac_catalogs"]`` (a sequence of StacCatalog)."""
    if options is not None and options.stac_catalogs:
        return options.stac_catalogs
    given = ctx.extras.get("stac_catalogs")
    if isinstance(given, list | tuple) and all(isinstance(c, StacCatalog) for c in given):
        return tuple(given)
    return ()


def _record_refusal(ctx: Context, error: ValidationError, *, href: str, catalog: str) -> None:
    """A reject row for a catalog or asset that was not read: what, where from, and why."""
    log.warning("STAC %s refused reason=%s catalog=%s: %s", href, error.reason, catalog, error)
    with ctx.sessions() as s:
        s.add(
            Reject(
                source="stac",
                reason=error.reason[:60],
                message=str(error)[:2000],
                subject=href[:120],
                cid=None,
                meta={"href": href[:2000], "catalog": catalog[:2000]},
            )
        )
        s.commit()


def poll_stac(
    ctx: Context, *, options: SchedulerOptions | None = None, now: dt.datetime | None = None
) -> StacPoll:
    """One pass over the configured catalogs (see the module docstring)."""
    from ingest.fetch import FetchPolicy, fetch
    from ingest.observations import ingest_raster
    from ingest.stac import discover_assets
    from oracle.scheduler.hooks import on_new_observation

    catalogs = catalogs_of(ctx, options)
    now = now or dt.datetime.now(dt.UTC)
    policy = FetchPolicy.from_settings(ctx.settings)
    found = ingested = known = rejected = failed = refused = 0
    for catalog in catalogs:
        try:
            assets = discover_assets(
                catalog.source,
                collections=catalog.collections,
                bbox=catalog.bbox,
                start=now - dt.timedelta(days=catalog.lookback_days),
                end=now,
                asset_keys=catalog.asset_keys,
                policy=policy,
            )
        except ValidationError as e:
            _record_refusal(ctx, e, href=catalog.source, catalog=catalog.source)
            refused += 1
            continue
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
                data = fetch(asset.href, policy, max_bytes=policy.max_asset_bytes)
            except ValidationError as e:
                _record_refusal(ctx, e, href=asset.href, catalog=catalog.source)
                refused += 1
                continue
            except OracleError as e:
                log.error("STAC asset %s failed: %s", asset.href, e)
                failed += 1
                continue
            try:
                out = ingest_raster(
                    ctx.sessions,
                    ctx.blobs,
                    data,
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
    result = StacPoll(len(catalogs), found, ingested, known, rejected, failed, refused)
    if catalogs:
        log.info("STAC poll: %s", result)
    return result
