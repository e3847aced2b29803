"""``oracle network init|status``: a network of oracle nodes (mounted by ``oracle/cli.py`` as ``network``).

``init`` writes a local development network: every node's keys and directory, and the network file
listing the members and k. ``status`` shows the members and, for a running node, its open rounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="A network of oracle nodes that co-sign every report (k of n).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Option("--dir", help="where the network's files go")],
    nodes: Annotated[int, typer.Option("--nodes", help="number of nodes (n)")] = 3,
    threshold: Annotated[int, typer.Option("--threshold", help="signatures a report needs (k)")] = 2,
    base_port: Annotated[
        int, typer.Option("--base-port", help="API port of node1; node i gets base+i-1")
    ] = 8101,
    host: Annotated[str, typer.Option(help="address every node's API binds and peers call")] = "127.0.0.1",
    transmit_timeout: Annotated[
        float,
        typer.Option("--transmit-timeout", help="seconds the next transmitter waits for the one before"),
    ] = 3.0,
) -> None:
    """Write a local development network: keys, one directory per node, and the network file."""
    from oracle.network.init import init_network

    result = init_network(
        directory,
        nodes=nodes,
        threshold=threshold,
        base_port=base_port,
        host=host,
        transmit_timeout_s=transmit_timeout,
    )
    net = result.network
    typer.echo(f"network {net.name}: {len(net.members)} nodes, k = {net.threshold}, in {directory}")
    for m in net.members:
        typer.echo(f"  {m.id:<8} signer {m.signer}  peer {m.url}")
    typer.echo(f"run a member with: oracle run --network {directory} --node {net.members[0].id}")


@app.command("status")
def status_command(
    directory: Annotated[Path, typer.Option("--dir", help="the network's directory")],
) -> None:
    """The members, k, and what each node's database says about its rounds."""
    from sqlalchemy import func, select

    from oracle.network.membership import Network
    from oracle.network.node import node_dir
    from oracle.storage.db import make_engine, session_factory
    from oracle.storage.network_tables import NetworkRound

    net = Network.load(directory)
    typer.echo(f"network {net.name}: {len(net.members)} nodes, k = {net.threshold}")
    for m in net.members:
        db = node_dir(directory, m.id) / "oracle.sqlite3"
        states = "no database yet"
        if db.exists():
            engine = make_engine(f"sqlite:///{db.resolve()}")
            try:
                with session_factory(engine)() as s:
                    rows = s.execute(
                        select(NetworkRound.status, func.count()).group_by(NetworkRound.status)
                    ).all()
                states = ", ".join(f"{st} {n}" for st, n in rows) or "no rounds"
            except Exception as e:  # noqa: BLE001 - a node that never started has no tables yet
                states = f"unreadable ({type(e).__name__})"
            finally:
                engine.dispose()
        typer.echo(f"  {m.id:<8} {m.url:<28} {states}")
