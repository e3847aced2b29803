"""The ``oracle`` command.

Every command has ``--help``. User errors (bad configuration, missing files, refused input) print one
line to stderr and exit 1 (2 for usage errors); tracebacks are for bugs only.

The command groups that live beside their domain code (``signer``, ``ingest``, ``models``, ...) are
loaded only when invoked: :data:`LAZY_COMMANDS` holds each one's one-line help for ``oracle --help``,
so that ``oracle --help`` and ``oracle version`` import neither SQLAlchemy, web3, numpy nor LightGBM.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from oracle import __version__
from oracle.errors import ConfigError, OracleError, ValidationError
from oracle.logs import configure_logging

if TYPE_CHECKING:
    from typer import _click as click  # typer vendors click: its groups hold these commands

    from oracle.config import Settings


@dataclass(frozen=True)
class LazyCommand:
    """A command or group mounted on first use: ``load`` returns its click command."""

    help: str
    load: Callable[[], click.Command]


def _typer_group(module: str, attribute: str = "app") -> Callable[[], click.Command]:
    def load() -> click.Command:
        sub: typer.Typer = getattr(importlib.import_module(module), attribute)
        return typer.main.get_group(sub)  # a group even with one command, as add_typer mounts it

    return load


def _typer_function(module: str, attribute: str, name: str, help_: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        sub = typer.Typer(add_completion=False)
        sub.command(name, help=help_)(getattr(importlib.import_module(module), attribute))
        return typer.main.get_command(sub)

    return load


def _load_ingest() -> click.Command:
    from oracle.commands import pipeline
    from oracle.commands.telemetry import ingest_app

    if not any(c.name == "raster" for c in ingest_app.registered_commands):
        ingest_app.command("raster")(pipeline.ingest_raster_command)
        ingest_app.command("weather")(pipeline.ingest_weather_command)
    return typer.main.get_group(ingest_app)


def _load_indices() -> click.Command:
    from oracle.commands.coldchain import mkt_command
    from oracle.commands.drought import spi_command

    indices_app = typer.Typer(help=LAZY_COMMANDS["indices"].help, no_args_is_help=True)
    indices_app.command("spi", help="Standardized Precipitation Index from monthly totals.")(spi_command)
    indices_app.command("mkt", help="Mean kinetic temperature (USP <1160>) of a log.")(mkt_command)
    return typer.main.get_group(indices_app)


def _load_models() -> click.Command:
    from oracle.commands.coldchain import train_coldchain_command
    from oracle.commands.drought import train_drought_command

    models_app = typer.Typer(help=LAZY_COMMANDS["models"].help, no_args_is_help=True)
    train_app = typer.Typer(help="Train a model; its artifact hash is the modelId.", no_args_is_help=True)
    train_app.command("drought", help="Train the drought severity model.")(train_drought_command)
    train_app.command("coldchain", help="Train the cold-chain breach model.")(train_coldchain_command)
    models_app.add_typer(train_app, name="train")
    return typer.main.get_group(models_app)


_VERIFY_HELP = "Recompute an attested decision from its inputs: MATCH or MISMATCH per step."
_EXPORT_HELP = "Write a self-contained bundle that `oracle verify --bundle` checks offline."
_WATCH_HELP = "Recompute every report the router accepts (no network keys needed); flag mismatches."
_ZONAL_HELP = (
    'Exact area-weighted mean per region: CSV region_id,mean,valid_fraction on stdout ("" = no data).'
)

#: The groups and commands beside their domain code, in ``oracle --help`` order. The help strings are
#: the loaded commands' own (a test compares them), kept here so that listing them imports nothing.
LAZY_COMMANDS: dict[str, LazyCommand] = {
    "signer": LazyCommand(
        "The oracle signer: generate a key, serve EIP-712 report signatures on loopback.",
        _typer_group("oracle.signer.cli"),
    ),
    "regions": LazyCommand(
        "Insured regions (GeoJSON polygons).", _typer_group("oracle.commands.pipeline", "regions_app")
    ),
    "evaluate": LazyCommand(
        "Run one evaluation now.", _typer_group("oracle.commands.pipeline", "evaluate_app")
    ),
    "shipments": LazyCommand(
        "Shipments under escrow.", _typer_group("oracle.commands.pipeline", "shipments_app")
    ),
    "devices": LazyCommand(
        "Telemetry devices: public keys (or legacy HMAC secrets) bound to shipments.",
        _typer_group("oracle.commands.telemetry", "devices_app"),
    ),
    "apikeys": LazyCommand(
        "API keys for the operators' HTTP API (roles: viewer, operator, admin).",
        _typer_group("oracle.commands.apikeys"),
    ),
    "backfill": LazyCommand("Evaluate past periods.", _typer_group("oracle.commands.backfill")),
    "network": LazyCommand(
        "A network of oracle nodes that co-sign every report (k of n).",
        _typer_group("oracle.commands.network"),
    ),
    "verify": LazyCommand(
        _VERIFY_HELP, _typer_function("oracle.commands.verify", "verify_command", "verify", _VERIFY_HELP)
    ),
    "export": LazyCommand(
        _EXPORT_HELP, _typer_function("oracle.commands.verify", "export_command", "export", _EXPORT_HELP)
    ),
    "watch": LazyCommand(
        _WATCH_HELP, _typer_function("oracle.commands.watch", "watch_command", "watch", _WATCH_HELP)
    ),
    "ingest": LazyCommand("Ingest workers.", _load_ingest),
    "zonal": LazyCommand(
        _ZONAL_HELP, _typer_function("oracle.commands.pipeline", "zonal_command", "zonal", _ZONAL_HELP)
    ),
    "indices": LazyCommand("Drought and cold-chain indices from CSV files.", _load_indices),
    "models": LazyCommand("Model training and the model registry.", _load_models),
    "products": LazyCommand(
        "Insurance products: terms and hash, burn analysis (backtest) and basis risk.",
        _typer_group("oracle.commands.products"),
    ),
}


@functools.cache
def load_command(name: str) -> click.Command:
    """The real command behind the lazy entry ``name`` (imported once per process)."""
    return LAZY_COMMANDS[name].load()


class _LazyGroup(TyperGroup):
    """The root group: lists the lazy entries by their help alone and imports one only to run it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in LAZY_COMMANDS:
            return found
        # For listings (help, suggestions): a stand-in that carries the help and nothing else.
        lazy = LAZY_COMMANDS[cmd_name]
        return TyperCommand(cmd_name, help=lazy.help, short_help=lazy.help)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in LAZY_COMMANDS and args[0] not in self.commands:
            self.add_command(load_command(args[0]), args[0])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="oracle",
    help="AI oracle for parametric insurance and supply-chain triggers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_LazyGroup,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
chain_app = typer.Typer(help="Local chain and contract deployments.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(chain_app, name="chain")
outbox_app = typer.Typer(help="The durable transaction outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
report_app = typer.Typer(help="Attested reports.", no_args_is_help=True)
app.add_typer(report_app, name="report")

log = logging.getLogger(__name__)


@app.command()
def version() -> None:
    """Print the oracle's version."""
    typer.echo(__version__)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Bring the database schema up to REVISION (default: the newest)."""
    from oracle.config import load_settings
    from oracle.context import check_database_setting, database_setting
    from oracle.errors import StorageError
    from oracle.storage import migrate
    from oracle.storage.db import redacted

    settings = load_settings()
    check_database_setting(settings)
    try:
        migrate.upgrade(settings.resolved_database_url, revision)
    except StorageError as e:
        raise ConfigError(f"{database_setting(settings)}: {e}") from None
    typer.echo(f"database at {revision}: {redacted(settings.resolved_database_url)}")


@chain_app.command("up")
def chain_up(
    port: Annotated[int, typer.Option(help="anvil port; 0 picks a free one")] = 0,
) -> None:
    """Start a local anvil (from node_modules), deploy the contracts, write the deployment record."""
    from oracle.config import load_settings
    from oracle.devstack.localchain import chain_up as up

    settings = load_settings()
    record = up(settings, port=port or None)
    typer.echo(f"anvil listening on {record.rpc_url} (chain id {record.chain_id})")
    for name, address in sorted(record.addresses.items()):
        typer.echo(f"  {name:24} {address}")
    typer.echo(f"deployment record: {settings.deployment_file}")
    from oracle.devstack.localchain import chainlink_jobs

    for job_id, task in sorted(chainlink_jobs(settings).items()):
        typer.echo(f"  chainlink job {job_id} → {task}")


@chain_app.command("down")
def chain_down() -> None:
    """Stop the local anvil started by `oracle chain up`."""
    from oracle.config import load_settings
    from oracle.devstack.localchain import chain_down as down

    stopped = down(load_settings())
    typer.echo("anvil stopped" if stopped else "no local anvil was running")


@app.command()
def run(
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="seed and run the live demo scenario")
    ] = True,
    port: Annotated[int | None, typer.Option(help="API port (default ORACLE_API_PORT)")] = None,
    network: Annotated[
        Path | None, typer.Option("--network", help="run as a member of the network in this directory")
    ] = None,
    node: Annotated[str | None, typer.Option("--node", help="the member to run (with --network)")] = None,
    single: Annotated[
        bool, typer.Option("--single", help="one node with one signer instead of the local network")
    ] = False,
) -> None:
    """Start the service. On embedded defaults (dev, no chain configured): a local network of 3 nodes
    (k = 2) sharing one anvil and one broker, with the live demo; --single runs one node as one process
    tree; --network DIR --node ID runs one member of a network."""
    from oracle.config import load_settings
    from oracle.service import serve

    settings = load_settings()
    configure_logging(settings.log_level, log_format=settings.log_format)
    if (network is None) != (node is None):
        raise ConfigError("--network and --node go together: oracle run --network DIR --node ID")
    if network is not None and node is not None:
        from oracle.network.node import node_settings

        settings = node_settings(settings, network, node)
        serve(settings, demo=False, port=port, network_dir=network, node_id=node)
        return
    if not single and settings.env == "dev" and not settings.chain_rpc_url:
        from oracle.devstack.localnet import serve_local_network

        if port is not None:
            settings = settings.model_copy(update={"api_port": port})
        serve_local_network(settings, demo=demo)
        return
    serve(settings, demo=demo, port=port)


@outbox_app.command("pump")
def outbox_pump(
    until_settled: Annotated[bool, typer.Option(help="exit once no transaction is open")] = False,
    timeout: Annotated[float, typer.Option(help="with --until-settled: give up after SECONDS")] = 300.0,
    interval: Annotated[float, typer.Option(help="seconds between passes")] = 0.2,
) -> None:
    """Post queued transactions (what `oracle run` does in the background), as a standalone worker."""
    import time

    from oracle.config import load_settings
    from oracle.context import open_context
    from oracle.devstack.localchain import load_or_create_transmitter
    from oracle.posting import make_poster

    settings = load_settings()
    configure_logging(settings.log_level, log_format=settings.log_format)
    ctx = open_context(settings)
    ctx.chain_rpc_url = _chain_url(settings)
    poster = make_poster(ctx, load_or_create_transmitter(settings))
    deadline = time.monotonic() + timeout
    while True:
        result = poster.pump()
        if until_settled and result.open == 0:
            typer.echo("outbox settled")
            return
        if until_settled and time.monotonic() > deadline:
            typer.echo(f"error: {result.open} transactions still open after {timeout:.0f}s", err=True)
            raise typer.Exit(1)
        time.sleep(interval)


@outbox_app.command("status")
def outbox_status() -> None:
    """Count outbox rows by state and show the ones that need attention."""
    from sqlalchemy import func, select

    from oracle.config import load_settings
    from oracle.context import open_context
    from oracle.storage.tables import OutboxRow

    ctx = open_context(load_settings())
    with ctx.sessions() as s:
        for status, n in s.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status)):
            typer.echo(f"{status:10} {n}")
        for row in s.scalars(select(OutboxRow).where(OutboxRow.status == "reverted").limit(20)):
            typer.echo(f"reverted   {row.key}: {row.revert_reason}")


@report_app.command("post")
def report_post(
    subject: Annotated[str, typer.Option(help="NAMESPACE:NAME, e.g. region:KE-01 or shipment:SHP-7")],
    kind: Annotated[str, typer.Option(help="drought or coldchain")],
    value: Annotated[str, typer.Option(help="drought: severity 0..5; coldchain: breach or delivered")],
    epoch: Annotated[int | None, typer.Option(help="default: one above the highest known")] = None,
    model_id: Annotated[str | None, typer.Option(help="0x… (default: the shipped model of the kind)")] = None,
) -> None:
    """Post a manual operator report through the signer and the outbox (no inputs: inputsRoot is zero)."""
    import time

    from oracle.attest import attest, next_epoch
    from oracle.config import load_settings
    from oracle.context import open_context
    from oracle.posting import posting_setup
    from oracle.provenance import EMPTY_ROOT
    from oracle.reports import Report, ReportKind, Verdict, subject_id, to_fixed

    settings = load_settings()
    namespace, _, name = subject.partition(":")
    sid = subject_id(namespace, name)
    if kind == "drought":
        report_kind, fixed = ReportKind.DROUGHT_SEVERITY, int(to_fixed(value))
    elif kind == "coldchain":
        verdicts = {"breach": Verdict.BREACH, "delivered": Verdict.DELIVERED}
        if value.lower() not in verdicts:
            raise ValidationError("--value for coldchain is breach or delivered", reason="bad_value")
        report_kind, fixed = ReportKind.COLDCHAIN_VERDICT, int(verdicts[value.lower()])
    else:
        raise ValidationError("--kind is drought or coldchain", reason="unknown_kind")
    ctx = open_context(settings)
    setup = posting_setup(ctx)
    with ctx.sessions() as s:
        chosen_epoch = epoch or next_epoch(s, sid)
    report = Report(
        subject=sid,
        kind=report_kind,
        value=fixed,
        epoch=chosen_epoch,
        observed_at=int(time.time()),
        inputs_root=EMPTY_ROOT,
        model_id=bytes.fromhex((model_id or _shipped_model_id(report_kind)).removeprefix("0x")),
    )
    att = attest(
        ctx.sessions,
        report,
        signers=setup.signers,
        threshold=setup.threshold,
        chain_id=setup.chain_id,
        router=setup.router,
        subject_name=subject,
        detail={"manual": True},
    )
    typer.echo(f"queued {att.outbox_key} (report {att.report_id}, epoch {chosen_epoch})")


def _shipped_model_id(kind: int) -> str:
    from models.registry import list_models

    if kind == 1:
        from models.drought.severity import DEFAULT_MODEL_DIRECTORY as directory
    else:
        from models.coldchain.breach_model import DEFAULT_ARTIFACT_DIR as directory
    cards = sorted(list_models(directory), key=lambda c: c.created_at)
    if not cards:
        raise ConfigError(f"no shipped model in {directory}; pass --model-id")
    return cards[-1].model_id_hex


def _chain_url(settings: Settings) -> str:
    from oracle.devstack.localchain import running_chain_url

    url = settings.chain_rpc_url or running_chain_url(settings)
    if not url:
        raise ConfigError("ORACLE_CHAIN_RPC_URL is not set and no local chain is up (`oracle chain up`)")
    return url


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the Typer app and turns OracleError into one clear line."""
    try:
        app(args=argv, standalone_mode=True)
    except OracleError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
