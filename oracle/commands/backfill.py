"""``oracle backfill drought --from YYYY-MM --to YYYY-MM [--region ID]... [--post]``.

Evaluates every region-period in the range (all registered regions unless ``--region`` is given), with a
Rich progress bar counting complete / incomplete / failed decisions on stderr and one line per
region-period plus a summary on stdout. An evaluation that raises is counted as failed with its reason
and the run goes on. With ``--post`` complete decisions are posted through the configured signer
(``ORACLE_SIGNER_URL`` / ``ORACLE_SIGNER_TOKEN``) and the deployment record into the outbox, which
``oracle run`` pumps to the chain.

Zonal means run on Dask (``ORACLE_DASK_SCHEDULER``, see :mod:`oracle.scale.cluster`): on the named
scheduler or ``local[:N]`` cluster always, and on a LocalCluster started for this run (and closed after
it) when the default is left empty and the run has at least :data:`DASK_MIN_EVALUATIONS` region-periods;
``off`` keeps everything in this process. Every step output, hence every CID and report, is the same
either way.

Exit codes: 0 when nothing failed, 1 when some evaluation failed, 2 for bad arguments or configuration.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from oracle.context import Context, open_context
from oracle.errors import OracleError, ValidationError

if TYPE_CHECKING:
    from oracle.scale.gridded import DaskZonalSteps

app = typer.Typer(help="Evaluate past periods.", no_args_is_help=True, add_completion=False)

log = logging.getLogger(__name__)

#: The longest range one backfill accepts: 100 years of months is a typo, not a backfill.
MAX_PERIODS = 1200
#: With ORACLE_DASK_SCHEDULER left empty, a run this large starts a LocalCluster; a smaller one is done
#: sooner without one (a cluster takes a few seconds to start).
DASK_MIN_EVALUATIONS = 24


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _regions(ctx: Context, wanted: list[str]) -> list[str]:
    from oracle.storage.decision_tables import Region

    with ctx.sessions() as s:
        known = list(s.scalars(select(Region.region_id).order_by(Region.region_id)).all())
    if not wanted:
        if not known:
            raise ValidationError(
                "no regions are registered (oracle regions add FILE.geojson)", reason="no_regions"
            )
        return known
    unknown = [r for r in wanted if r not in known]
    if unknown:
        raise ValidationError(f"unknown region(s): {', '.join(unknown)}", reason="unknown_region")
    return list(dict.fromkeys(wanted))


def _posting(ctx: Context) -> None:
    """Put the configured signer and deployment into the context; :raises ConfigError: when absent."""
    from oracle.chain.deploy import Deployment
    from oracle.errors import ConfigError

    settings = ctx.settings
    if not settings.signer_url or settings.signer_token is None:
        raise ConfigError("--post needs ORACLE_SIGNER_URL and ORACLE_SIGNER_TOKEN")
    if not settings.deployment_file.exists():
        raise ConfigError(f"--post needs a deployment record at {settings.deployment_file}")
    ctx.extras["deployment"] = Deployment.load(settings.deployment_file)
    ctx.extras["signer"] = (settings.signer_url, settings.signer_token.get_secret_value())


@app.callback()
def backfill() -> None:
    """Evaluate past periods (a group, so that ``drought`` stays a sub-command)."""


@app.command("drought")
def drought(
    first: str = typer.Option(..., "--from", help="first period, YYYY-MM"),
    last: str = typer.Option(..., "--to", help="last period, YYYY-MM (inclusive)"),
    region: list[str] = typer.Option([], "--region", help="region id; repeat for several (default: all)"),  # noqa: B008
    post: bool = typer.Option(False, "--post", help="post complete decisions through the signer and outbox"),
    model_dir: Path | None = typer.Option(  # noqa: B008
        None, "--model-dir", help="drought model directory (default: shipped)"
    ),
) -> None:
    """Evaluate every region-month from --from to --to and show the progress."""
    from oracle.config import load_settings
    from oracle.scheduler.periods import periods_between

    try:
        periods = periods_between(first, last)
        if not periods:
            raise ValidationError(f"--from {first} is after --to {last}", reason="bad_range")
        if len(periods) > MAX_PERIODS:
            raise ValidationError(f"{len(periods)} months is more than {MAX_PERIODS}", reason="bad_range")
        ctx = open_context(load_settings())
    except OracleError as e:
        raise _fail(str(e)) from None
    try:
        try:
            regions = _regions(ctx, region)
            if post:
                _posting(ctx)
        except OracleError as e:
            raise _fail(str(e)) from None
        counts = _run(ctx, regions, periods, post=post, model_dir=model_dir)
    finally:
        ctx.close()
    typer.echo(
        f"{counts['complete']} complete, {counts['incomplete']} incomplete, {counts['failed']} failed"
        + (f", {counts['posted']} posted" if post else "")
    )
    if counts["failed"]:
        raise typer.Exit(1)


def _run(
    ctx: Context,
    regions: list[str],
    periods: list[str],
    *,
    post: bool,
    model_dir: Path | None,
) -> Counter[str]:
    from oracle.scale.cluster import client_for, close
    from oracle.scale.gridded import DaskZonalSteps

    choice = ctx.settings.dask_scheduler
    wanted = choice not in ("", "off") or (
        choice == "" and len(regions) * len(periods) >= DASK_MIN_EVALUATIONS
    )
    try:
        client = client_for(ctx.settings) if wanted else None
    except OracleError as e:
        raise _fail(str(e)) from None
    zonal = DaskZonalSteps(client) if client is not None else None
    try:
        return _evaluate_all(ctx, regions, periods, post=post, model_dir=model_dir, zonal=zonal)
    finally:
        if client is not None:
            close(client)


def _evaluate_all(
    ctx: Context,
    regions: list[str],
    periods: list[str],
    *,
    post: bool,
    model_dir: Path | None,
    zonal: DaskZonalSteps | None,
) -> Counter[str]:
    from oracle.decisions.drought import evaluate_drought
    from oracle.scheduler.evaluations import post_outcome as post_one

    counts: Counter[str] = Counter(complete=0, incomplete=0, failed=0, posted=0)
    columns = (
        TextColumn("[bold]backfill drought"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[green]{task.fields[complete]} complete"),
        TextColumn("[yellow]{task.fields[incomplete]} incomplete"),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True)
    lines: list[str] = []
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(
            "drought", total=len(regions) * len(periods), complete=0, incomplete=0, failed=0
        )
        for period in periods:
            for region_id in regions:
                try:
                    outcome = evaluate_drought(
                        ctx.sessions,
                        ctx.blobs,
                        region_id=region_id,
                        period=period,
                        model_dir=model_dir,
                        zonal=zonal,
                    )
                    status, detail = outcome.status, outcome.reason
                    if outcome.report is not None:
                        detail = f"severity {outcome.report.value / 10**6:.3f} epoch {outcome.report.epoch}"
                        if post and post_one(ctx, outcome, subject_name=region_id) is not None:
                            counts["posted"] += 1
                except OracleError as e:
                    status, detail = "failed", str(e)
                except Exception as e:
                    log.exception("backfill failed region=%s period=%s", region_id, period)
                    status, detail = "failed", f"{type(e).__name__}: {e}"
                key = status if status in ("complete", "incomplete") else "failed"
                counts[key] += 1
                lines.append(f"{period} {region_id} {status}" + (f": {detail}" if detail else ""))
                progress.update(
                    task,
                    advance=1,
                    complete=counts["complete"],
                    incomplete=counts["incomplete"],
                    failed=counts["failed"],
                )
    for line in lines:
        typer.echo(line)
    return counts
