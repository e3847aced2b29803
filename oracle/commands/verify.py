"""``oracle verify`` and ``oracle export``: re-check an attested decision from its content-addressed
inputs, online (database, content store, chain) or offline from a bundle.

Exit codes: 0 every check matches; 1 something does not match (the first mismatch is named); 2 the
verification could not start (bad argument, unknown attestation, chain unreachable), one line on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oracle.errors import OracleError, ValidationError
from oracle.verify import (
    AttestedReport,
    DirectorySource,
    LayeredSource,
    StoreSource,
    Verification,
    export_bundle,
    locate,
    read_attested,
    replay,
    router_for,
    verify_bundle,
)
from oracle.verify.chain import Located
from oracle.verify.device_signatures import DeviceAuth


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _print(result: Verification, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    typer.echo(f"manifest {result.manifest_cid}")
    for check in result.checks:
        line = f"{check.status:<9} {check.name}"
        if not check.ok and check.detail:
            line += f"  ({check.detail})"
        typer.echo(line)
    for note in result.notes:
        typer.echo(f"note: {note}")
    first = result.first_mismatch
    if first is None:
        typer.echo("RESULT: MATCH")
    else:
        typer.echo(f"RESULT: MISMATCH, first at {first.name}: {first.detail}")


def _online(
    attestation: str, *, rpc_url: str | None, router: str | None
) -> tuple[Located, AttestedReport, StoreSource, dict[str, DeviceAuth]]:
    from oracle.chain.client import connect
    from oracle.chain.deploy import Deployment
    from oracle.config import load_settings
    from oracle.context import open_context

    settings = load_settings()
    ctx = open_context(settings)
    try:
        located = locate(ctx.sessions, attestation)
        from oracle.devstack.localchain import running_chain_url

        url = rpc_url or settings.chain_rpc_url or running_chain_url(settings)
        if not url:
            raise ValidationError(
                "no chain RPC URL: pass --rpc-url, set ORACLE_CHAIN_RPC_URL, or start the local chain "
                "(`oracle run` or `oracle chain up` in this data directory)",
                reason="no_rpc",
            )
        if router is None:
            if settings.deployment_file.exists():
                router = Deployment.load(settings.deployment_file).address("OracleRouter")
            else:
                router = router_for(ctx.sessions, located.tx_hash)
        attested = read_attested(connect(url), router=router, tx_hash=located.tx_hash)
        from oracle.verify.device_signatures import device_auth

        with ctx.sessions() as s:
            keys = device_auth(s)  # public keys only: every telemetry message's signature is checked
        return located, attested, StoreSource(ctx.blobs), keys
    finally:
        ctx.close()


def verify_command(
    attestation: Annotated[
        str | None,
        typer.Argument(help="report id or transaction hash of the attestation (omit with --bundle)"),
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="check a bundle from `oracle export` offline")
    ] = None,
    inputs: Annotated[
        Path | None,
        typer.Option("--inputs", help="directory of input files named by CID, read before the content store"),
    ] = None,
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="chain RPC (default ORACLE_CHAIN_RPC_URL)")
    ] = None,
    router: Annotated[
        str | None, typer.Option("--router", help="router address (default: the deployment)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the checks as JSON")] = False,
) -> None:
    """Recompute every step of an attested decision and compare it with the report on-chain."""
    try:
        if bundle is not None:
            if attestation is not None:
                raise ValidationError("give an attestation or --bundle, not both", reason="bad_arguments")
            result = verify_bundle(bundle)
        else:
            if attestation is None:
                raise ValidationError(
                    "give an attestation (report id or tx hash) or --bundle DIR", reason="bad_arguments"
                )
            located, attested, store, keys = _online(attestation, rpc_url=rpc_url, router=router)
            source = LayeredSource([DirectorySource(inputs), store] if inputs is not None else [store])
            result = replay(source, located.manifest_cid, attested, device_keys=keys)
    except OracleError as e:
        raise _fail(str(e)) from None
    _print(result, as_json=as_json)
    raise typer.Exit(0 if result.ok else 1)


def export_command(
    attestation: Annotated[str, typer.Argument(help="report id or transaction hash of the attestation")],
    directory: Annotated[Path, typer.Argument(help="where to write the bundle (created; must be empty)")],
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="chain RPC (default ORACLE_CHAIN_RPC_URL)")
    ] = None,
    router: Annotated[
        str | None, typer.Option("--router", help="router address (default: the deployment)")
    ] = None,
) -> None:
    """Write a self-contained bundle that `oracle verify --bundle DIR` checks offline."""
    try:
        located, attested, store, keys = _online(attestation, rpc_url=rpc_url, router=router)
        export_bundle(
            store, manifest_cid=located.manifest_cid, attested=attested, directory=directory, device_keys=keys
        )
    except OracleError as e:
        raise _fail(str(e)) from None
    typer.echo(f"bundle written to {directory} (manifest {located.manifest_cid}, tx {attested.tx_hash})")
