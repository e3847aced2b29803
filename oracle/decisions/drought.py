"""Drought evaluation of one region for one month: stored inputs → zonal means → indices → severity score
→ report, every step recorded (see :mod:`oracle.decisions.trace`).

Inputs, looked up in the observations table:

* monthly precipitation (mm): rasters of variable ``precip`` with cadence ``monthly`` and/or weather feeds
  of variable ``precip`` with a series for the region; at least ``min_precip_months`` consecutive months
  ending with the period (SPI-6 and its calibration need history). Where both exist for a month, the
  raster wins;
* NDVI, land-surface temperature and soil moisture rasters for the period's calendar month, this year and
  at least ``min_history_years`` earlier years (VCI, TCI and the soil-moisture percentile need them);
* daily precipitation rasters (cadence ``daily``) of the period, optional: without them the dry-spell
  feature is missing, which the model accepts.

When several accepted files claim the same variable and date, the last one received is used. A region whose
inputs are incomplete gets a decision with status ``incomplete`` naming what is missing, and no report:
the policy pays nothing until the inputs are complete (an evaluation after the policy's data deadline is
the insurer's call; the oracle never reports a made-up value).

Report: subject ``region:<id>``, kind DROUGHT_SEVERITY, value = expected severity (0…5) × 10⁶, observedAt =
the last second of the period (UTC), epoch = months since year 0 × 1000 + revision, where the revision counts
earlier, different complete decisions for the same region and period (late data). Same inputs and model give
the same report, bit for bit.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from oracle.decisions.record import DecisionOutcome, lacking_inputs, record_decision
from oracle.decisions.trace import Trace, step_boundary
from oracle.errors import NotFound, ValidationError
from oracle.provenance import merkle_root
from oracle.reports import Report, ReportKind, subject_id, to_fixed
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import Region
from oracle.storage.tables import Observation

if TYPE_CHECKING:
    from oracle.scale.gridded import ZonalSteps

log = logging.getLogger(__name__)

#: Rasters are re-read during evaluation and verification: their time stamps were checked at ingest, so
#: the reader's "not in the future" bound must not depend on the clock here.
FAR_FUTURE = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
REVISIONS_PER_PERIOD = 1000


@dataclass(frozen=True)
class DroughtTerms:
    min_precip_months: int = 36
    min_history_years: int = 2
    calibration: tuple[int, int] | None = None
    #: What flagged inputs do: "exclude" them, "hold" the decision for review, or "record" the flag.
    duplicates: str = "exclude"
    climatology: str = "record"


def parse_period(period: str) -> tuple[int, int]:
    try:
        year_s, month_s = period.split("-")
        year, month = int(year_s), int(month_s)
    except ValueError:
        raise ValidationError(f"period {period!r} must be YYYY-MM", reason="bad_period") from None
    if not (1 <= month <= 12 and 1900 <= year <= 2999) or len(period) != 7:
        raise ValidationError(f"period {period!r} must be YYYY-MM", reason="bad_period")
    return year, month


def period_end(year: int, month: int) -> int:
    last = calendar.monthrange(year, month)[1]
    return int(dt.datetime(year, month, last, 23, 59, 59, tzinfo=dt.UTC).timestamp())


def _months_back(year: int, month: int, n: int) -> str:
    index = year * 12 + (month - 1) - n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# -- pure steps (also replayed by `oracle verify`) ----------------------------------------------------


@step_boundary
def zonal_mean_step(raster: bytes, region_feature: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """Area-weighted mean of one raster over one region, as recorded in the trace."""
    from ingest.raster import read_raster
    from ingest.regions import parse_regions
    from ingest.zonal import zonal_means

    (region,) = parse_regions({"type": "FeatureCollection", "features": [json.loads(region_feature)]})
    grid = read_raster(raster, variable=params["variable"], units=params.get("units"), now=FAR_FUTURE)
    stats = zonal_means(grid, [region])
    mean = float(stats.means[0])
    # A fingerprint of the whole field: a re-sent old raster under a new date shows up as a repeat.
    values = np.where(np.isnan(grid.values), -1.0e300, grid.values).astype("<f8")
    return {
        "values_sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        "region_id": region.region_id,
        "variable": params.get("label", params["variable"]),
        "date": params["date"],
        "mean": None if math.isnan(mean) else mean,
        "valid_fraction": float(stats.valid_fraction[0]),
    }


def weather_series_step(feed: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """The region's monthly series from a weather feed, as {YYYY-MM: value}."""
    from ingest.observations import read_weather

    table = read_weather(feed, variable=params["variable"], units=params.get("units"), now=FAR_FUTURE)
    series = table.series(params["region_id"])
    out = {f"{ts.year:04d}-{ts.month:02d}": (None if np.isnan(v) else float(v)) for ts, v in series.items()}
    return {"region_id": params["region_id"], "variable": params["variable"], "series": out}


@step_boundary
def screen_step(parts: Sequence[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Poisoning and fault screen over the zonal means: a raster whose field repeats an earlier date's
    exactly is a duplicate claiming to be new (``duplicates`` mode, default exclude); a current value
    far outside its own climatology is flagged (``climatology`` mode, default record: a drought *is* an
    extreme, so by default the flag is logged for the auditor, not acted on)."""
    from models.quality import apply_policy, flag_region_means

    # Sorted, so the output is the same whatever order the parts arrive in (a replay sees them by CID).
    rasters = sorted(
        (p for p in parts if "values_sha256" in p),
        key=lambda p: (p["variable"], p["date"], p["values_sha256"]),
    )
    first_seen: dict[tuple[str, str], str] = {}
    duplicates = []
    for p in rasters:
        key = (p["variable"], p["values_sha256"])
        if key in first_seen and first_seen[key] != p["date"]:
            duplicates.append(
                {
                    "reason": "duplicate",
                    "variable": p["variable"],
                    "date": p["date"],
                    "detail": f"same field as {first_seen[key]}",
                }
            )
        first_seen.setdefault(key, p["date"])
    climatology = []
    for cur in (p for p in rasters if p["date"][:7] == params["period"] and p["mean"] is not None):
        history = [
            h
            for h in rasters
            if h["variable"] == cur["variable"]
            and h["date"][5:7] == cur["date"][5:7]
            and h["date"] < cur["date"]
            and h["mean"] is not None
        ]
        for f in flag_region_means(cur, history):
            if str(f.reason) in ("climatology", "low_coverage"):
                climatology.append(
                    {"reason": str(f.reason), "variable": f.variable, "date": f.date, "detail": f.detail}
                )
    dropped = []
    hold = False
    for flags, mode in ((duplicates, params["duplicates"]), (climatology, params["climatology"])):
        if not flags:
            continue
        if mode == "exclude":
            dropped += [[f["variable"], f["date"]] for f in flags]
        elif mode == "hold":
            hold = True
        apply_policy([], mode=mode)  # validates the mode name
    return {"flags": duplicates + climatology, "dropped": sorted(dropped), "hold": hold}


@step_boundary
def features_step(parts: Sequence[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Region-month features from the zonal means and series (see ``models.drought.region_features``)."""
    from models.drought.region_features import RegionObservations, region_features

    year, month = parse_period(params["period"])
    precip: dict[str, float] = {}
    current: dict[str, float] = {}
    history: dict[str, list[float]] = {"ndvi": [], "lst": [], "soil_moisture": []}
    daily: list[float] = []
    for p in sorted(parts, key=lambda p: json.dumps(p, sort_keys=True)):
        if "flags" in p:
            continue  # the screen's verdict rides along as an input so the graph shows it; not a value
        if "series" in p:
            for k, v in p["series"].items():
                if v is not None and k <= params["period"]:
                    precip.setdefault(k, v)
            continue
        mean, date, var = p["mean"], p["date"], p["variable"]
        if mean is None:
            continue
        if var == "precip_monthly":
            precip[date[:7]] = mean
        elif var == "precip_daily":
            daily.append(mean)
        elif date[:7] == params["period"]:
            current[var] = mean
        else:
            history[var].append(mean)
    months = [_months_back(year, month, n) for n in range(int(params["months"]) - 1, -1, -1)]
    series = [precip[m] for m in months]
    first_year, first_month = parse_period(months[0])
    obs = RegionObservations(
        monthly_precip_mm=series,
        start_year=first_year,
        start_month=first_month,
        daily_precip_mm=daily if daily else [math.nan],
        ndvi=current["ndvi"],
        ndvi_history=history["ndvi"],
        lst_c=current["lst"],
        lst_history_c=history["lst"],
        soil_moisture=current["soil_moisture"],
        soil_moisture_history=history["soil_moisture"],
    )
    calibration = tuple(params["calibration"]) if params.get("calibration") else None
    row = region_features(obs, calibration=calibration)
    features = {
        k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        for k, v in row.iloc[0].items()
    }
    if not daily:
        features["dry_spell_days"] = None
    return features


@step_boundary
def score_step(features: dict[str, Any], artifact: bytes) -> dict[str, Any]:
    import pandas as pd

    from models.drought.severity import DroughtSeverityModel

    model = DroughtSeverityModel.load(artifact)
    frame = pd.DataFrame([{k: (math.nan if v is None else v) for k, v in features.items()}])
    (result,) = model.predict(frame)
    return {
        "probabilities": {k: float(v) for k, v in result.probabilities.items()},
        "score": float(result.score),
        "most_likely": result.most_likely,
        "factors": [
            {"feature": f.feature, "value": float(f.value), "contribution": float(f.contribution)}
            for f in result.top_factors
        ],
    }


@step_boundary
def report_step(score: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The report's fields other than the epoch (the epoch is bookkeeping: period and revision)."""
    severity = min(5.0, max(0.0, float(score["score"])))
    return {
        "subject": "0x" + subject_id("region", params["region_id"]).hex(),
        "kind": int(ReportKind.DROUGHT_SEVERITY),
        "value": str(to_fixed(round(severity, 6))),
        "observedAt": period_end(*parse_period(params["period"])),
        "inputsRoot": params["inputs_root"],
        "modelId": params["model_id"],
    }


# -- the evaluation -----------------------------------------------------------------------------------


@dataclass
class _Inputs:
    rasters: list[Observation] = field(default_factory=list)
    feeds: list[Observation] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _latest_per_date(rows: Sequence[Observation]) -> list[Observation]:
    chosen: dict[tuple[str, str, str], Observation] = {}
    for r in sorted(rows, key=lambda r: (r.received_at, r.id)):
        chosen[(r.variable, r.meta.get("cadence", ""), r.meta.get("date", ""))] = r
    return sorted(chosen.values(), key=lambda r: (r.variable, r.meta.get("date", ""), r.cid))


def _gather(s: Session, region_id: str, period: str, terms: DroughtTerms) -> _Inputs:
    _, month = parse_period(period)
    rasters = s.scalars(select(Observation).where(Observation.kind == "raster")).all()
    picked = []
    for r in rasters:
        date = str(r.meta.get("date", ""))
        if not date or date[:7] > period:
            continue
        cadence = r.meta.get("cadence", "monthly")
        if r.variable == "precip":
            if cadence == "monthly" or (cadence == "daily" and date[:7] == period):
                picked.append(r)
        elif r.variable in ("ndvi", "lst", "soil_moisture") and int(date[5:7]) == month:
            picked.append(r)
    inputs = _Inputs(rasters=_latest_per_date(picked))
    feeds = s.scalars(
        select(Observation).where(Observation.kind == "weather", Observation.variable == "precip")
    ).all()
    inputs.feeds = sorted(
        (
            f
            for f in feeds
            if region_id in f.meta.get("stations", []) and f.meta.get("frequency") == "monthly"
        ),
        key=lambda f: f.cid,
    )
    for var in ("ndvi", "lst", "soil_moisture"):
        dates = {r.meta["date"][:7] for r in inputs.rasters if r.variable == var}
        if period not in dates:
            inputs.missing.append(f"{var} for {period}")
        if len(dates - {period}) < terms.min_history_years:
            inputs.missing.append(
                f"{var} history: {len(dates - {period})} of {terms.min_history_years} earlier years"
            )
    return inputs


def evaluate_drought(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    *,
    region_id: str,
    period: str,
    model_dir: Path | None = None,
    terms: DroughtTerms | None = None,
    zonal: ZonalSteps | None = None,
) -> DecisionOutcome:
    """Evaluate ``region_id`` for ``period`` (YYYY-MM) and record the decision; does not post anything.

    ``zonal`` runs the zonal-mean steps (e.g. :class:`oracle.scale.gridded.DaskZonalSteps` on a Dask
    cluster); by default a large evaluation goes to Dask and a small one stays in this process
    (:func:`oracle.scale.gridded.zonal_steps_for`). Either way the steps and their CIDs are the same.
    """
    from models.drought.severity import DEFAULT_MODEL_DIRECTORY
    from models.registry import list_models, load_model, model_id_for
    from oracle.scale.gridded import zonal_steps_for

    terms = terms or DroughtTerms()
    year, month = parse_period(period)
    with sessions() as s:
        region = s.get(Region, region_id)
        if region is None:
            raise NotFound(f"region {region_id!r} is not registered (oracle regions add FILE.geojson)")
        inputs = _gather(s, region_id, period, terms)
        region_cid, subject = region.cid, region.subject
    trace = Trace(blobs)
    raw_inputs = sorted({region_cid, *(r.cid for r in inputs.rasters), *(f.cid for f in inputs.feeds)})
    lacking = lacking_inputs(blobs, raw_inputs)
    if lacking:
        # An input this node cannot read (nor get from a peer): the decision stays incomplete, unsigned.
        return _record(
            sessions,
            trace,
            region_id,
            subject,
            period,
            raw_inputs,
            status="incomplete",
            reason="; ".join(lacking),
        )
    parts: list[dict[str, Any]] = []
    part_cids: list[str] = []
    jobs: list[tuple[str, dict[str, Any]]] = []
    for r in inputs.rasters:
        label = r.variable if r.variable != "precip" else f"precip_{r.meta.get('cadence', 'monthly')}"
        params = {
            "variable": r.variable,
            "label": label,
            "units": r.meta.get("source_units"),
            "date": r.meta["date"],
        }
        jobs.append((r.cid, params))
    outs = (zonal or zonal_steps_for(blobs, jobs))(blobs, region_cid, jobs)
    for (raster_cid, params), out in zip(jobs, outs, strict=True):
        parts.append(out)
        part_cids.append(
            trace.record("zonal_mean", inputs=[raster_cid, region_cid], output=out, params=params)
        )
    for f in inputs.feeds:
        params = {"variable": "precip", "units": f.meta.get("units") or None, "region_id": region_id}
        out = weather_series_step(blobs.get(f.cid), params)
        parts.append(out)
        part_cids.append(trace.record("weather_series", inputs=[f.cid], output=out, params=params))

    months = [_months_back(year, month, n) for n in range(terms.min_precip_months - 1, -1, -1)]
    have = {p["date"][:7] for p in parts if p.get("variable") == "precip_monthly" and p["mean"] is not None}
    for p in parts:
        if "series" in p:
            have |= {k for k, v in p["series"].items() if v is not None}
    missing_months = [m for m in months if m not in have]
    if missing_months:
        inputs.missing.append(
            f"monthly precipitation: {len(missing_months)} of the {terms.min_precip_months} months up to "
            f"{period} (first missing {missing_months[0]})"
        )
    if inputs.missing:
        return _record(
            sessions,
            trace,
            region_id,
            subject,
            period,
            raw_inputs,
            status="incomplete",
            reason="; ".join(inputs.missing),
        )

    screen_params = {"period": period, "duplicates": terms.duplicates, "climatology": terms.climatology}
    screen = screen_step(parts, screen_params)
    screen_cid = trace.record("screen", inputs=sorted(part_cids), output=screen, params=screen_params)
    dropped = {(v, d) for v, d in screen["dropped"]}
    kept = [
        (p, c)
        for p, c in zip(parts, part_cids, strict=True)
        if (p.get("variable"), p.get("date")) not in dropped
    ]
    quality_flags = [
        {"quality": f["reason"], "variable": f["variable"], "date": f["date"], "detail": f["detail"]}
        for f in screen["flags"]
    ]
    if screen["hold"]:
        return _record(
            sessions,
            trace,
            region_id,
            subject,
            period,
            raw_inputs,
            status="held",
            reason="held for review: flagged inputs",
            flags=quality_flags,
        )
    feature_params = {"period": period, "months": terms.min_precip_months, "calibration": terms.calibration}
    features = features_step([p for p, _ in kept], feature_params)
    features_cid = trace.record(
        "features", inputs=[*sorted([c for _, c in kept]), screen_cid], output=features, params=feature_params
    )

    directory = model_dir or DEFAULT_MODEL_DIRECTORY
    cards = list_models(directory)
    if not cards:
        raise NotFound(f"no drought model in {directory}; run `oracle models train drought`")
    approved = [c for c in cards if c.approval == "approved"]
    card = sorted(approved or cards, key=lambda c: (c.created_at, c.model_id_hex))[-1]
    artifact, _ = load_model(directory, card.model_id_hex)
    model_cid = blobs.put(artifact)
    scored = score_step(features, artifact)
    score_cid = trace.record(
        "score", inputs=[features_cid, model_cid], output=scored, params={"model": card.name}
    )

    model_id = "0x" + model_id_for(artifact).hex()
    inputs_root = "0x" + merkle_root(raw_inputs).hex()
    report_params = {
        "region_id": region_id,
        "period": period,
        "inputs_root": inputs_root,
        "model_id": model_id,
    }
    fields = report_step(scored, report_params)
    trace.record("report", inputs=[score_cid], output=fields, params=report_params)
    return _record(
        sessions,
        trace,
        region_id,
        subject,
        period,
        raw_inputs,
        status="complete",
        reason="",
        fields=fields,
        scored=scored,
        model_cid=model_cid,
        flags=quality_flags,
    )


def _record(
    sessions: sessionmaker[Session],
    trace: Trace,
    region_id: str,
    subject: str,
    period: str,
    raw_inputs: list[str],
    *,
    status: str,
    reason: str,
    fields: dict[str, Any] | None = None,
    scored: dict[str, Any] | None = None,
    model_cid: str | None = None,
    flags: list[dict[str, Any]] | None = None,
) -> DecisionOutcome:
    decision_id, revision, manifest_cid = record_decision(
        sessions,
        trace,
        kind="drought",
        subject_name=region_id,
        subject=subject,
        period=period,
        raw_inputs=raw_inputs,
        model_cid=model_cid,
        status=status,
        reason=reason,
        fields=fields,
        confidence=max(scored["probabilities"].values()) if scored else None,
        factors=scored["factors"] if scored else [],
        flags=flags,
        manifest_extra={"region_id": region_id},
    )
    report = None
    if status == "complete" and fields is not None:
        year, month = parse_period(period)
        report = Report(
            subject=bytes.fromhex(fields["subject"][2:]),
            kind=ReportKind(fields["kind"]),
            value=int(fields["value"]),
            epoch=(year * 12 + month - 1) * REVISIONS_PER_PERIOD + revision,
            observed_at=int(fields["observedAt"]),
            inputs_root=bytes.fromhex(fields["inputsRoot"][2:]),
            model_id=bytes.fromhex(fields["modelId"][2:]),
        )
    log.info("drought decision region=%s period=%s status=%s %s", region_id, period, status, reason)
    return DecisionOutcome(
        decision_id=decision_id,
        status=status,
        reason=reason,
        report=report,
        score=float(scored["score"]) if scored else None,
        factors=scored["factors"] if scored else [],
        manifest_cid=manifest_cid,
        steps=list(trace.steps),
        flags=flags or [],
    )
