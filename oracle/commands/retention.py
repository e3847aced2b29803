"""``oracle devices retention``: drop whole months of telemetry readings (PostgreSQL partitions).

What is kept: the current month and the ``--keep-months`` months before it; every month holding a
reading of a shipment whose escrow is not settled on-chain (voided, released or reclaimed), including
shipments the chain listener has never seen; and the default partition (readings of months without a
partition of their own). Everything else is detached and dropped whole, with the idempotency keys of its
readings (so a reading of a dropped month that arrives again would be stored again; the ingest refuses
readings more than its reorder window, 7 days, older than the device's newest, so only a device silent
since then could do that). The partitions of this month and the next two are created on the way.
On SQLite there are no partitions: the command says so and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

import typer
from sqlalchemy import Connection, select

from oracle.reports import subject_id
from oracle.storage import partitions
from oracle.storage.tables import Shipment

SETTLED = ("voided", "released", "reclaimed")


@dataclass(frozen=True)
class MonthVerdict:
    partition: partitions.MonthPartition
    drop: bool
    why: str


def plan(
    months: Iterable[partitions.MonthPartition],
    *,
    current: int,
    keep_months: int,
    undecided: dict[int, list[str]],
) -> list[MonthVerdict]:
    """Which months to drop: older than ``current - keep_months`` and without undecided shipments
    (``undecided``: per month, the shipment ids whose escrow is not settled)."""
    out = []
    for p in months:
        if p.month >= current - keep_months:
            out.append(MonthVerdict(p, False, "recent"))
        elif undecided.get(p.month):
            names = sorted(undecided[p.month])
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            out.append(MonthVerdict(p, False, f"undecided: {', '.join(names[:3])}{more}"))
        else:
            out.append(MonthVerdict(p, True, "older, every shipment settled"))
    return out


def undecided_shipments(conn: Connection, months: Iterable[int]) -> dict[int, list[str]]:
    """Per month, the shipment ids with readings there whose escrow is not settled."""
    settled = {
        str(s).lower()
        for s in conn.execute(select(Shipment.subject).where(Shipment.status.in_(SETTLED))).scalars()
    }
    out: dict[int, list[str]] = {}
    for month in months:
        names = partitions.shipments_in(conn, month)
        out[month] = [n for n in names if "0x" + subject_id("shipment", n).hex() not in settled]
    return out


def retention_command(
    keep_months: Annotated[
        int, typer.Option("--keep-months", min=0, help="keep the current month and this many before it")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be dropped; change nothing")
    ] = False,
) -> None:
    """Drop whole months of telemetry readings older than --keep-months (PostgreSQL partitions).

    Keeps every month that holds readings of a shipment whose escrow is not settled (voided, released or
    reclaimed), and the default partition. Also creates the partitions of this month and the next two.
    """
    from oracle.config import load_settings
    from oracle.context import open_context

    ctx = open_context(load_settings())
    try:
        with ctx.engine.connect() as conn:
            if not partitions.is_partitioned(conn):
                typer.echo("readings are partitioned on PostgreSQL only; this database keeps one table")
                return
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        current = partitions.month_of(now_ms)
        if not dry_run:
            for month in partitions.ensure_months_ahead(ctx.engine, now_ms=now_ms):
                typer.echo(f"created partition {partitions.partition_name(month)}")
        with ctx.engine.connect() as conn:
            months = partitions.list_months(conn)
            old = [p.month for p in months if p.month < current - keep_months]
            verdicts = plan(
                months, current=current, keep_months=keep_months, undecided=undecided_shipments(conn, old)
            )
            default = partitions.default_count(conn)
        dropped = 0
        for v in verdicts:
            action = "drop" if v.drop else "keep"
            if v.drop and not dry_run:
                dropped += partitions.drop_month(ctx.engine, v.partition.month)
                action = "dropped"
            typer.echo(
                f"{partitions.month_label(v.partition.month)}  {v.partition.readings:>10} readings  "
                f"{action:8} {v.why}"
            )
        typer.echo(f"default  {default:>10} readings  keep     (months without a partition)")
        if dry_run:
            typer.echo("dry run: nothing changed")
        else:
            typer.echo(f"{dropped} readings dropped")
    finally:
        ctx.close()
