"""Operator commands for the data pipeline: regions, ingest, zonal statistics, evaluations, reports."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

from oracle.config import load_settings
from oracle.context import Context, open_context
from oracle.errors import ValidationError

regions_app = typer.Typer(help="Insured regions (GeoJSON polygons).", no_args_is_help=True)
evaluate_app = typer.Typer(help="Run one evaluation now.", no_args_is_help=True)
shipments_app = typer.Typer(help="Shipments under escrow.", no_args_is_help=True)


def _ctx() -> Context:
    return open_context(load_settings())


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ValidationError(f"cannot read {path}: {e.strerror}", reason="unreadable_file") from None


@regions_app.command("add")
def regions_add(
    file: Annotated[Path, typer.Argument(help="GeoJSON FeatureCollection with region_id properties")],
) -> None:
    """Register regions; each region's geometry is stored in the content store."""
    from ingest.observations import add_regions

    ctx = _ctx()
    for region_id in add_regions(ctx.sessions, ctx.blobs, _read(file)):
        typer.echo(region_id)


@regions_app.command("list")
def regions_list() -> None:
    """List registered regions with their on-chain subject."""
    from sqlalchemy import select

    from oracle.storage.decision_tables import Region

    ctx = _ctx()
    with ctx.sessions() as s:
        for r in s.scalars(select(Region).order_by(Region.region_id)):
            typer.echo(f"{r.region_id}\t{r.subject}\t{r.name}")


def zonal_command(
    raster: Annotated[Path, typer.Option("--raster", help="GeoTIFF, COG or NetCDF file")],
    regions: Annotated[Path, typer.Option("--regions", help="GeoJSON FeatureCollection with region_id")],
    variable: Annotated[str, typer.Option(help="ndvi, lst, soil_moisture or precip")] = "precip",
    units: Annotated[str | None, typer.Option(help="override the file's units (e.g. mm)")] = None,
) -> None:
    """Exact area-weighted mean per region: CSV region_id,mean,valid_fraction on stdout ("" = no data)."""
    from ingest.raster import read_raster
    from ingest.regions import parse_regions
    from ingest.zonal import zonal_means

    data = _read(raster)
    # A zonal mean needs no units: a file without unit metadata is averaged as stored (ingest, which
    # converts to canonical units, still refuses it).
    grid = read_raster(data, variable=variable, name=raster.name, units=units, assume_canonical_units=True)
    if grid.units_assumed:
        typer.echo(f"note: {raster.name} has no unit metadata; means are in the file's own units", err=True)
    stats = zonal_means(grid, parse_regions(_read(regions)))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["region_id", "mean", "valid_fraction"])
    for rid, mean, fraction in zip(stats.region_ids, stats.means, stats.valid_fraction, strict=True):
        out.writerow([rid, "" if mean != mean else f"{mean:.6f}", f"{fraction:.6f}"])


def ingest_raster_command(
    file: Annotated[Path, typer.Argument(help="GeoTIFF, COG or NetCDF file")],
    variable: Annotated[str, typer.Option(help="ndvi, lst, soil_moisture or precip")],
    cadence: Annotated[str, typer.Option(help="monthly or daily (precipitation)")] = "monthly",
    units: Annotated[str | None, typer.Option(help="override the file's units (e.g. mm)")] = None,
    observed_at: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD when the file has no time stamp")
    ] = None,
    source: Annotated[str, typer.Option(help="where the file came from")] = "",
) -> None:
    """Store, validate and record one raster; a refused file is quarantined with its reason (exit 1)."""
    from ingest.observations import ingest_raster

    if cadence not in ("monthly", "daily"):
        raise ValidationError("--cadence must be monthly or daily", reason="bad_cadence")
    when = dt.datetime.fromisoformat(observed_at).replace(tzinfo=dt.UTC) if observed_at else None
    ctx = _ctx()
    out = ingest_raster(
        ctx.sessions,
        ctx.blobs,
        _read(file),
        variable=variable,
        source=source or str(file),
        name=file.name,
        units=units,
        cadence="daily" if cadence == "daily" else "monthly",
        observed_at=when,
    )
    _report_ingest(out, ctx)


def ingest_weather_command(
    file: Annotated[Path, typer.Argument(help="CSV or JSON weather feed")],
    variable: Annotated[str, typer.Option(help="precip or air_temperature")] = "precip",
    units: Annotated[str | None, typer.Option(help="units when the feed does not say")] = None,
    source: Annotated[str, typer.Option(help="where the feed came from")] = "",
) -> None:
    """Store, validate and record a weather feed; a refused feed is quarantined with its reason (exit 1)."""
    from ingest.observations import ingest_weather

    ctx = _ctx()
    out = ingest_weather(
        ctx.sessions, ctx.blobs, _read(file), variable=variable, source=source or str(file), units=units
    )
    _report_ingest(out, ctx)


def _report_ingest(out: object, ctx: Context | None = None) -> None:
    from ingest.observations import IngestOutcome

    assert isinstance(out, IngestOutcome)
    if out.accepted:
        typer.echo(f"{'already stored' if out.duplicate else 'accepted'} {out.cid}")
        if ctx is not None and out.observation_id is not None and not out.duplicate:
            from oracle.scheduler import on_new_observation

            for region, period in on_new_observation(ctx, out.observation_id):
                typer.echo(f"  re-evaluation of {region} {period} scheduled (late data)")
        return
    typer.echo(f"quarantined {out.cid}: {out.reason}: {out.message}", err=True)
    raise typer.Exit(1)


def _post(ctx: Context, outcome: object, subject_name: str) -> None:
    from oracle.decisions.post import post_decision
    from oracle.decisions.record import DecisionOutcome
    from oracle.posting import posting_setup

    assert isinstance(outcome, DecisionOutcome)
    setup = posting_setup(ctx)
    att = post_decision(
        ctx.sessions,
        outcome,
        subject_name=subject_name,
        signers=setup.signers,
        threshold=setup.threshold,
        chain_id=setup.chain_id,
        router=setup.router,
    )
    typer.echo(f"queued {att.outbox_key} (report {att.report_id}); the running service posts it")


@evaluate_app.command("drought")
def evaluate_drought_command(
    region: Annotated[str, typer.Option(help="region_id")],
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    post: Annotated[bool, typer.Option("--post/--no-post", help="attest and queue the report")] = False,
) -> None:
    """Evaluate one region-month; prints the decision, its score and top-3 factors."""
    from oracle.decisions.drought import evaluate_drought

    ctx = _ctx()
    outcome = evaluate_drought(ctx.sessions, ctx.blobs, region_id=region, period=period)
    typer.echo(f"decision {outcome.decision_id}: {outcome.status} {outcome.reason}".rstrip())
    if outcome.report is not None:
        typer.echo(
            f"severity {outcome.score:.4f} (value {outcome.report.value}, epoch {outcome.report.epoch})"
        )
        for f in outcome.factors:
            typer.echo(f"  {f['feature']:16} {f['value']:>10.3f}  contribution {f['contribution']:+.3f}")
        if post:
            _post(ctx, outcome, region)
    elif post:
        raise typer.Exit(1)


@evaluate_app.command("shipment")
def evaluate_shipment_command(
    shipment: Annotated[str, typer.Argument(help="shipment id")],
    profile: Annotated[str | None, typer.Option(help="product profile when not registered on-chain")] = None,
    post: Annotated[bool, typer.Option("--post/--no-post", help="attest and queue the verdict")] = False,
) -> None:
    """Evaluate one shipment: rule verdict, breaches, and the model's probabilities."""
    from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment

    ctx = _ctx()
    outcome = evaluate_shipment(
        ctx.sessions, ctx.blobs, shipment_id=shipment, terms=ShipmentTerms(profile=profile), now=None
    )
    typer.echo(f"decision {outcome.decision_id}: {outcome.status} {outcome.reason}".rstrip())
    if outcome.report is not None:
        typer.echo(
            f"verdict {outcome.report.value} (1 = BREACH, 2 = DELIVERED), epoch {outcome.report.epoch}"
        )
    typer.echo(f"p(compromised) {outcome.score:.3f}" if outcome.score is not None else "no readings yet")
    for flag in outcome.flags:
        typer.echo(f"  alert: {flag}")
    if post and outcome.report is not None:
        _post(ctx, outcome, shipment)


@shipments_app.command("deliver")
def shipments_deliver(
    shipment: Annotated[str, typer.Argument(help="shipment id")],
    at: Annotated[str | None, typer.Option(help="ISO-8601 delivery time (default: now)")] = None,
    by: Annotated[str, typer.Option(help="who confirms the hand-over")] = "operator",
) -> None:
    """Record the hand-over to the consignee; the next evaluation can release the payment."""
    from oracle.decisions.coldchain import mark_delivered

    when = dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC)
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    ctx = _ctx()
    typer.echo(mark_delivered(ctx.sessions, ctx.blobs, shipment, delivered_at=when, by=by))


def _secret(prompt: str, *, from_stdin: bool, env: str | None = None, confirm: bool = False) -> str:
    """A secret from stdin (first line), an environment variable, or a hidden prompt; never an option,
    so it stays out of the process list and the shell history."""
    import os

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if env and os.environ.get(env):
        return os.environ[env]
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


@shipments_app.command("disposition")
def shipments_disposition(
    shipment: Annotated[str, typer.Argument(help="shipment id or 0x subject")],
    out: Annotated[Path | None, typer.Option(help="write the report here (.pdf, .html or .json)")] = None,
) -> None:
    """Print a shipment's disposition content SHA-256 and sign-offs; write the report with --out."""
    import json

    from oracle.disposition.sign import disposition_document, domain_of

    ctx = _ctx()
    with ctx.sessions() as s:
        doc = disposition_document(s, ctx.blobs, shipment, domain=domain_of(ctx.extras))
    typer.echo(f"{doc.shipment}: {doc.content['decision']['verdict']}, content SHA-256 {doc.sha256}")
    for x in doc.signoffs:
        state = "" if x.content_sha256 == doc.sha256 else " (an earlier version)"
        typer.echo(f"  signed {x.meaning} by {x.printed_name} at {x.to_json()['signed_at']}{state}")
    if out is not None:
        if out.suffix == ".pdf":
            from oracle.disposition.pdf import render_pdf

            out.write_bytes(render_pdf(doc.content, doc.signoffs, doc.sha256))
        elif out.suffix == ".html":
            from oracle.disposition.html import render_html

            out.write_text(render_html(doc.content, doc.signoffs, doc.sha256), encoding="utf-8")
        else:
            out.write_text(json.dumps(doc.to_json(), indent=2), encoding="utf-8")
        typer.echo(f"wrote {out}")


@shipments_app.command("enroll-signer")
def shipments_enroll_signer(
    key_id: Annotated[int, typer.Option("--key-id", help="the signer's API key id (oracle apikeys list)")],
    name: Annotated[str, typer.Option("--name", help="the signer's printed name, as sign-offs show it")],
    password_stdin: Annotated[bool, typer.Option(help="read the signing password from stdin")] = False,
) -> None:
    """Give an API key a signing password: the second component every disposition sign-off needs."""
    from oracle.disposition.signoffs import enroll_signer
    from oracle.storage.api_tables import AuditEntry

    password = _secret("Signing password", from_stdin=password_stdin, confirm=True)
    ctx = _ctx()
    with ctx.sessions() as s:
        credential = enroll_signer(s, key_id=key_id, printed_name=name, password=password)
        s.add(
            AuditEntry(
                key_id=None,
                key_name="cli",
                method="CLI",
                path="oracle shipments enroll-signer",
                resource="signing_credentials",
                resource_id=str(credential),
                summary=f"enrolled {name.strip()!r} as signer for API key {key_id}",
                status=200,
            )
        )
        s.commit()
    typer.echo(f"signing credential {credential} for API key {key_id}: {name.strip()}")


@shipments_app.command("signoff")
def shipments_signoff(
    shipment: Annotated[str, typer.Argument(help="shipment id or 0x subject")],
    name: Annotated[str, typer.Option("--name", help="your printed name, as enrolled")],
    meaning: Annotated[str, typer.Option(help="review, approval, responsibility or authorship")],
    content_sha256: Annotated[
        str, typer.Option("--content-sha256", help="the SHA-256 of the report you reviewed")
    ],
    password_stdin: Annotated[bool, typer.Option(help="read the signing password from stdin")] = False,
) -> None:
    """Sign a shipment's disposition electronically (21 CFR Part 11 style): your API key (ORACLE_API_KEY,
    or prompted) and your signing password (prompted, or --password-stdin)."""
    from oracle.api.keys import verify_key
    from oracle.disposition.sign import domain_of, sign_disposition
    from oracle.disposition.signoffs import SignoffRefused
    from oracle.storage.api_tables import AuditEntry

    presented = _secret("API key", from_stdin=False, env="ORACLE_API_KEY")
    password = _secret("Signing password", from_stdin=password_stdin)
    ctx = _ctx()
    with ctx.sessions() as s:
        key = verify_key(s, presented.strip())
        if key is None:
            typer.echo("refused: the API key is not valid (malformed, unknown or revoked)", err=True)
            raise typer.Exit(1)

        def audit(session: object, row: object, refused: SignoffRefused | None) -> None:
            from sqlalchemy.orm import Session

            from oracle.storage.signoff_tables import DispositionSignoff

            assert isinstance(session, Session)
            ok = isinstance(row, DispositionSignoff)
            summary = (
                f"signed ({row.meaning}) as {row.printed_name}: content {row.content_sha256}, "
                f"sign-off {row.seq} {row.entry_hash}"
                if isinstance(row, DispositionSignoff)
                else f"sign-off refused: {refused.reason if refused else '?'}"
            )
            session.add(
                AuditEntry(
                    key_id=key.id,
                    key_name=key.name,
                    method="CLI",
                    path="oracle shipments signoff",
                    resource="disposition_signoffs",
                    resource_id=shipment,
                    summary=summary,
                    status=201 if ok else (refused.status if refused else 400),
                )
            )

        try:
            signed = sign_disposition(
                s,
                ctx.blobs,
                shipment=shipment,
                key=key,
                printed_name=name,
                meaning=meaning,
                signed_sha256=content_sha256,
                password=password,
                domain=domain_of(ctx.extras),
                audit=audit,
            )
        except SignoffRefused as e:
            typer.echo(f"refused ({e.reason}): {e}", err=True)
            raise typer.Exit(1) from None
    shown = signed.to_json()
    typer.echo(
        f"signed {shown['shipment']} ({shown['meaning']}) as {shown['printed_name']} "
        f"at {shown['signed_at']}; content {shown['content_sha256']}, "
        f"sign-off {shown['seq']} {shown['entry_hash']}"
    )


@shipments_app.command("verify-signoffs")
def shipments_verify_signoffs() -> None:
    """Walk the hash-chained sign-off log; exit 1 at the first broken link."""
    from oracle.disposition.signoffs import verify_chain

    ctx = _ctx()
    with ctx.sessions() as s:
        check = verify_chain(s)
    if check.ok:
        typer.echo(f"sign-off log intact: {check.entries} entries")
        return
    typer.echo(f"sign-off log BROKEN at entry {check.broken_seq}: {check.problem}", err=True)
    raise typer.Exit(1)
