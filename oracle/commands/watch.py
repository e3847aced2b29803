"""``oracle watch``: recompute every report the router accepts, from the nodes' public data."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from oracle.errors import OracleError

WATCH_HELP = "Recompute every report the router accepts (no network keys needed); flag mismatches."


def watch_command(
    rpc_url: Annotated[str, typer.Option("--rpc-url", help="the chain's RPC URL")],
    router: Annotated[str, typer.Option("--router", help="the OracleRouter address")],
    node: Annotated[
        list[str] | None, typer.Option("--node", help="a node's base URL (repeat for each node)")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="directory of blobs named by CID (`oracle export`)")
    ] = None,
    state: Annotated[Path, typer.Option("--state", help="where the cursor is kept across restarts")] = Path(
        "watch-state.json"
    ),
    evidence: Annotated[
        Path, typer.Option("--evidence", help="directory for dispute evidence, files named by CID")
    ] = Path("watch-evidence"),
    from_block: Annotated[int, typer.Option("--from-block", help="first block to look at")] = 0,
    confirmations: Annotated[int, typer.Option("--confirmations", min=0)] = 0,
    interval: Annotated[float, typer.Option("--interval", help="seconds between passes", min=0.05)] = 2.0,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="serve /metrics on this port (loopback)")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="one pass, then exit (1 if any mismatch)")] = False,
    dispute_key: Annotated[
        Path | None,
        typer.Option(
            "--dispute-key",
            help="file with the watcher's own funded private key (hex, or a JSON keystore whose password"
            " is in $ORACLE_WATCH_KEY_PASSWORD): file disputes of mismatching reports on --pool/--escrow",
        ),
    ] = None,
    pool: Annotated[
        str | None, typer.Option("--pool", help="the DroughtInsurancePool to file disputes on")
    ] = None,
    escrow: Annotated[
        str | None,
        typer.Option("--escrow", help="the ColdChainEscrow to file disputes of cold-chain verdicts on"),
    ] = None,
) -> None:
    """Recompute every report the router accepts (no network keys needed); flag mismatches."""
    from oracle.chain.client import connect
    from oracle.logs import configure_logging
    from oracle.verify.replay import MISMATCH
    from oracle.verify.watch import Watcher

    configure_logging("INFO")
    if not node and bundle is None:
        typer.echo("give at least one --node URL or a --bundle directory", err=True)
        raise typer.Exit(2)
    if (dispute_key is None) != (pool is None and escrow is None):
        typer.echo("--dispute-key goes with --pool and/or --escrow", err=True)
        raise typer.Exit(2)
    try:
        w3 = connect(rpc_url)
        filer = None
        if dispute_key is not None:
            from oracle.verify.dispute_filer import DisputeFiler, load_key

            filer = DisputeFiler(
                w3,
                pool=pool,
                escrow=escrow,
                account=load_key(dispute_key),
                db_path=state.parent / "disputes.sqlite3",
                confirmations=max(1, confirmations),
            )
        watcher = Watcher(
            w3,
            router=router,
            nodes=node or [],
            state_path=state,
            evidence_dir=evidence,
            bundle=bundle,
            from_block=from_block,
            confirmations=confirmations,
            filer=filer,
        )
    except OracleError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=watcher.metrics.registry)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    mismatches = 0
    try:
        while not stop.is_set():
            try:
                results = watcher.poll()
            except Exception as e:  # noqa: BLE001 - RPC or node trouble: log it, try again next pass
                logging.getLogger("oracle.watch").warning("watch pass failed: %s: %s", type(e).__name__, e)
                results = []
            mismatches += sum(r.status == MISMATCH for r in results)
            if once:
                break
            stop.wait(interval)
    finally:
        watcher.close()
    raise typer.Exit(1 if once and mismatches else 0)
