"""Harness for the agreement run (tests/network/test_agreement_200.py): many decisions at once through
the real node processes of a :class:`tests.network.cluster.Cluster`, and each node's record of them.

A drought decision reads every monthly rainfall raster up to its period and the period's calendar month
of NDVI, land-surface temperature and soil moisture, one zonal-mean step per raster. The shared world
(tests/drought/world.py: ten years of rain) costs 144 steps a decision; :func:`build_lean_world` writes
the least a complete decision needs (36 months of rain, three Junes of the rest: 45 steps), so a node
decides a region-month about three times faster and 100 of them fit the suite's budget. It is written
the same way, from one seed, so every node ingests identical bytes (identical CIDs) on its own.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from shapely.geometry import box

from oracle.context import open_context
from tests.network.cluster import Cluster

PERIOD = "2026-06"
#: Epoch of the first report for :data:`PERIOD` (months since year 0 × 1000 + revision 0).
DROUGHT_EPOCH = (2026 * 12 + 6 - 1) * 1000
#: A cold-chain verdict's first report (1 + revision 0).
SHIPMENT_EPOCH = 1


def lean_regions(n: int, prefix: str) -> dict[str, Any]:
    """``n`` regions tiling the world's 1° × 1° square in 0.1° boxes (2 × 2 cells each, both halves), so
    dry and wet regions alike get decided and their scores differ."""
    regions = {}
    for i in range(n):
        row, col = divmod(i % 100, 10)
        west, north = 36.0 + 0.1 * col + 0.01, -0.01 - 0.1 * row
        regions[f"{prefix}{i:03d}"] = box(west, north - 0.08, west + 0.08, north)
    return regions


def build_lean_world(sessions: object, blobs: object, tmp: Path, *, seed: int = 5) -> list[str]:
    """Ingest the least a complete decision for :data:`PERIOD` needs: monthly rain 2023-07 … 2026-06 and
    June NDVI, LST and soil moisture for 2024-2026, on the grid of tests/drought/world.py. The west half's
    rains fail from January 2026 and its vegetation browns. Returns the raster CIDs."""
    from ingest.observations import ingest_raster
    from tests.drought.world import TRANSFORM, _field
    from tests.fixtures.rasters import geotiff_bytes

    rng = np.random.default_rng(seed)
    climatology = [120, 110, 140, 160, 90, 40, 20, 25, 50, 100, 140, 130]
    cids: list[str] = []
    for index in range(2023 * 12 + 6, 2026 * 12 + 6):
        year, month = divmod(index, 12)
        month += 1
        normal = climatology[month - 1] * float(rng.gamma(8, 1 / 8))
        west = normal * (0.08 if year == 2026 else 1.0)
        values = np.clip(_field(rng, west, normal, 6.0), 0, None)
        data = geotiff_bytes(
            values, transform=TRANSFORM, tmp_dir=tmp, units="mm", time=f"{year}-{month:02d}-01T00:00:00Z"
        )
        out = ingest_raster(
            sessions,  # type: ignore[arg-type]
            blobs,  # type: ignore[arg-type]
            data,
            variable="precip",
            cadence="monthly",
            name=f"chirps-{year}-{month:02d}",
        )
        assert out.accepted, out.message
        cids.append(out.cid)
    for year in range(2022, 2027):
        dry = year == 2026
        ndvi, lst, sm = 6000 + rng.normal(0, 800), 303.0 + rng.normal(0, 2.0), 0.28 + rng.normal(0, 0.04)
        layers = {
            "ndvi": (np.int16, 0.0001, _field(rng, ndvi - 2000 if dry else ndvi, ndvi, 150), None),
            "lst": (np.float32, 1.0, _field(rng, lst + 6.0 if dry else lst, lst, 0.5), "K"),
            "soil_moisture": (np.float32, 1.0, _field(rng, sm - 0.12 if dry else sm, sm, 0.01), "m3 m-3"),
        }
        for variable, (dtype, scale, values, units) in layers.items():
            data = geotiff_bytes(
                values.astype(dtype),
                transform=TRANSFORM,
                tmp_dir=tmp,
                scale=scale,
                units=units,
                time=f"{year}-06-15T00:00:00Z",
                nodata=-9999,
            )
            out = ingest_raster(sessions, blobs, data, variable=variable, name=f"{variable}-{year}")  # type: ignore[arg-type]
            assert out.accepted, (variable, out.message)
            cids.append(out.cid)
    return cids


@dataclass(frozen=True)
class Logger:
    """A shipment's temperature logger: its own ES256 key (nodes hold only the public key)."""

    shipment: str
    device: str
    key: Any
    temps: list[float]
    start_s: int
    breach: bool

    @property
    def last_s(self) -> int:
        return self.start_s + (len(self.temps) - 1) * 600


def seed_node(
    cluster: Cluster, node_id: str, tmp: Path, *, regions: dict[str, Any], loggers: Iterable[Logger]
) -> None:
    """What the node's operator does before it starts: ingest the lean world and the regions, enroll the
    loggers by their public keys, and make an operator API key (in ``cluster.keys``)."""
    from ingest.observations import add_regions
    from oracle.api.keys import create_key, parse_role
    from oracle.device_keys import public_pem
    from oracle.devices import register_device_key
    from tests.fixtures.rasters import region_feature_collection

    tmp.mkdir(parents=True, exist_ok=True)
    ctx = open_context(cluster.settings(node_id))
    try:
        build_lean_world(ctx.sessions, ctx.blobs, tmp)
        add_regions(ctx.sessions, ctx.blobs, json.dumps(region_feature_collection(regions)).encode())
        for lg in loggers:
            register_device_key(
                ctx.sessions,
                device_id=lg.device,
                public_key_pem=public_pem(lg.key),
                shipment_id=lg.shipment,
                valid_from=dt.datetime.fromtimestamp(lg.start_s - 60, dt.UTC),
            )
        with ctx.sessions() as s:
            key = create_key(s, role=parse_role("operator"), name=f"agreement-{node_id}")
            s.commit()
        cluster.keys[node_id] = key.secret_key
    finally:
        ctx.close()


def open_shipments(cluster: Cluster, shipments: list[str], *, amount: int = 100 * 10**6) -> None:
    """The buyer escrows ``amount`` for each shipment (refrigerated profile) and the seller accepts."""
    cluster.open_shipments(shipments, amount=amount)


class NodeRecords:
    """Each node's own database, read from the test process (the nodes keep running)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.ctxs = {n: open_context(cluster.settings(n), upgrade=False) for n in cluster.network.ids}

    def close(self) -> None:
        for ctx in self.ctxs.values():
            ctx.close()

    def rounds(self, node_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        """(subject hex, epoch) → the node's round: status, digest, manifest CID and the signatures it
        holds ({node: digest})."""
        from sqlalchemy import select

        from oracle.storage.network_tables import NetworkRound, PeerSignature

        with self.ctxs[node_id].sessions() as s:
            rounds = s.scalars(select(NetworkRound)).all()
            sigs = s.scalars(select(PeerSignature)).all()
        out: dict[tuple[str, int], dict[str, Any]] = {
            (r.subject, r.epoch): {
                "status": r.status,
                "digest": r.digest,
                "manifest": r.manifest_cid,
                "combined": list(r.combined),
                "signatures": {},
                "manifests": {},
            }
            for r in rounds
        }
        for sig in sigs:
            entry = out.setdefault(
                (sig.subject, sig.epoch),
                {"status": None, "digest": None, "manifest": None, "combined": [], "signatures": {}},
            )
            entry["signatures"][sig.node_id] = sig.digest
            entry.setdefault("manifests", {})[sig.node_id] = sig.manifest_cid
        return out

    def step_outputs(self, node_id: str, manifest_cid: str) -> list[tuple[str, str]]:
        """(step name, output CID) of every step in the node's own copy of a decision manifest."""
        manifest = json.loads(self.ctxs[node_id].blobs.get(manifest_cid))
        return [(step["name"], step["output"]) for step in manifest["steps"]]

    def explain(self, node_id: str, manifest_cid: str, ref_node: str, ref_cid: str) -> str:
        """Where ``node_id``'s decision manifest departs from ``ref_node``'s: the raw inputs each holds
        alone, the steps whose outputs differ (with a short view of each side's output), and the node's
        log lines about the subject. For the failure message of a test that found different bits."""
        import json

        def load(n: str, cid: str) -> Any:
            try:
                return json.loads(self.ctxs[n].blobs.get(cid))
            except Exception as e:  # a missing blob is itself the finding
                return {"unreadable": f"{type(e).__name__}: {e}"}

        mine, ref = load(node_id, manifest_cid), load(ref_node, ref_cid)
        out = [f"{node_id} {manifest_cid} vs {ref_node} {ref_cid}"]
        for key in ("status", "reason", "report", "flags"):
            if mine.get(key) != ref.get(key):
                out.append(f"  {key}: {mine.get(key)!r} vs {ref.get(key)!r}")
        a, b = set(mine.get("inputs", [])), set(ref.get("inputs", []))
        out.append(f"  inputs only {node_id}: {sorted(a - b)}; only {ref_node}: {sorted(b - a)}")
        ref_steps = {s["name"]: s for s in ref.get("steps", [])}
        for step in mine.get("steps", []):
            theirs = ref_steps.get(step["name"])
            if theirs is not None and theirs["output"] == step["output"] and theirs == step:
                continue
            out.append(f"  step {step['name']}: {step} vs {theirs}")
            for n, s in ((node_id, step), (ref_node, theirs)):
                if s is not None:
                    body = load(n, s["output"])
                    rows = body.get("readings") if isinstance(body, dict) else None
                    if rows:
                        span = f"{len(rows)} rows {rows[0]['ts_ms']}..{rows[-1]['ts_ms']}"
                        body = {**body, "readings": span}
                    out.append(f"    {n}: {json.dumps(body, default=str)[:1500]}")
        subject = str(mine.get("subject") or ref.get("subject"))
        lines = [line for line in self.cluster.log(node_id).splitlines() if subject in line]
        out.append(f"  {node_id} log on {subject} ({len(lines)} lines):")
        out += [f"    {line[:400]}" for line in lines[-40:]]
        return "\n".join(out)

    def disagreements(self, node_id: str) -> int:
        from oracle.network.rounds import disagreement_count

        return disagreement_count(self.ctxs[node_id])

    def shipments(self, node_id: str) -> set[str]:
        """Subjects (hex) of the escrowed shipments the node's listener has seen."""
        from sqlalchemy import select

        from oracle.storage.tables import Shipment

        with self.ctxs[node_id].sessions() as s:
            return {str(x) for x in s.scalars(select(Shipment.subject)).all()}

    def readings(self, node_id: str) -> dict[str, int]:
        """Accepted readings per shipment on the node."""
        from sqlalchemy import func, select

        from oracle.storage.tables import TelemetryReading

        with self.ctxs[node_id].sessions() as s:
            rows = s.execute(
                select(TelemetryReading.shipment_id, func.count()).group_by(TelemetryReading.shipment_id)
            ).all()
        return {str(shipment): int(n) for shipment, n in rows}

    def mark_delivered(self, node_id: str, shipment: str, *, at_s: int) -> str:
        """The consignee's hand-over, recorded on the node as its operator would (one document, one CID
        on every node)."""
        from oracle.decisions.coldchain import mark_delivered

        ctx = self.ctxs[node_id]
        return mark_delivered(
            ctx.sessions,
            ctx.blobs,
            shipment,
            delivered_at=dt.datetime.fromtimestamp(at_s, dt.UTC),
            by="agreement consignee",
        )


def ask_all(
    cluster: Cluster, pool: ThreadPoolExecutor, body: dict[str, Any], nodes: Iterable[str] | None = None
) -> list[Any]:
    """Ask each node (concurrently) to evaluate ``body``'s subject; futures of (node, status, text)."""

    def ask(node_id: str) -> tuple[str, int, str]:
        try:
            r = cluster.api(node_id, "POST", "/v1/attestations", json=body)
        except httpx.HTTPError as e:
            return node_id, 0, f"{type(e).__name__}: {e}"
        return node_id, r.status_code, r.text[:500]

    return [pool.submit(ask, n) for n in (nodes or cluster.network.ids)]


def poll(check: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = "") -> Any:
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last {last!r}")
