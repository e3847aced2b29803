"""The ``oracle`` executable's entry point: ``oracle --help`` and ``oracle version`` without Typer.

Typer, click and rich are what make the CLI pleasant, and what make it slow to start: a one-command
Typer app takes about 2.7 times as long as importing typer and rich (``bench/cli.py``). The two commands
an operator types most to find their way, the top-level help and the version, need none of it: they are
answered here from :data:`COMMANDS`, the command index. Everything else goes to :func:`oracle.cli.main`.

:data:`COMMANDS` is checked against the Typer app by ``tests/test_cli.py``: a command added to the app
and not here (or with other help) fails the tests, so the two listings cannot drift apart.
"""

from __future__ import annotations

import sys

from oracle import __version__

SUMMARY = "AI oracle for parametric insurance and supply-chain triggers."

#: Every top-level command in ``oracle --help`` order, with the first sentence of its help.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("version", "Print the oracle's version."),
    ("run", "Start the service."),
    ("db", "Database schema."),
    ("chain", "Local chain and contract deployments."),
    ("outbox", "The durable transaction outbox."),
    ("report", "Attested reports."),
    ("signer", "The oracle signer: generate a key, serve EIP-712 report signatures on loopback."),
    ("regions", "Insured regions (GeoJSON polygons)."),
    ("evaluate", "Run one evaluation now."),
    ("shipments", "Shipments under escrow."),
    ("devices", "Telemetry devices: public keys (or legacy HMAC secrets) bound to shipments."),
    ("apikeys", "API keys for the operators' HTTP API (roles: viewer, operator, admin)."),
    ("backfill", "Evaluate past periods."),
    ("network", "A network of oracle nodes that co-sign every report (k of n)."),
    ("verify", "Recompute an attested decision from its inputs: MATCH or MISMATCH per step."),
    ("export", "Write a self-contained bundle that `oracle verify --bundle` checks offline."),
    ("watch", "Recompute every report the router accepts (no network keys needed); flag mismatches."),
    ("ingest", "Ingest workers."),
    (
        "zonal",
        'Exact area-weighted mean per region: CSV region_id,mean,valid_fraction on stdout ("" = no data).',
    ),
    ("indices", "Drought and cold-chain indices from CSV files."),
    ("models", "Model training and the model registry."),
    ("products", "Insurance products: terms and hash, burn analysis (backtest) and basis risk."),
)


def first_sentence(text: str) -> str:
    """The first sentence of a help text, whitespace folded (what :data:`COMMANDS` holds)."""
    folded = " ".join(text.split())
    cut = folded.find(". ")
    return folded if cut < 0 else folded[: cut + 1]


def help_text() -> str:
    width = max(len(name) for name, _ in COMMANDS)
    lines = [
        "Usage: oracle [OPTIONS] COMMAND [ARGS]...",
        "",
        f"  {SUMMARY}",
        "",
        "Options:",
        "  --help  Show this message and exit.",
        "",
        "Commands:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMANDS),
        "",
        "Run `oracle COMMAND --help` for a command's options.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = sys.argv[1:]
    if args == ["version"]:
        sys.stdout.write(__version__ + "\n")
        return
    if args in ([], ["--help"]):
        sys.stdout.write(help_text())
        return
    from oracle.cli import main as full

    full()
