"""Compute everything that gets hashed, signed or trained on, and print its digests as one JSON line.

Run as ``python -m tests.models.determinism_probe`` in a subprocess, once per machine setting (numpy's
widest SIMD on or off, one thread or many); ``test_determinism`` compares the lines. With
``PROBE_PERTURB_NUMPY=1`` numpy's own transcendental ufuncs are replaced by versions that are off by a
relative 2**-20, far more than any CPU's SIMD kernels ever are (a few ulp), so that the canonical
quantisation cannot hide a dependence: nothing hashed may change, because hashed values must not depend
on those functions at all (see ``models.numerics``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

PERTURBED = ("exp", "log", "sin", "cos", "tan", "power", "log1p", "expm1", "log10", "log2", "exp2", "tanh")


def _perturb_numpy() -> None:
    """Replace numpy's transcendental ufuncs by slightly-off versions (attribute lookups only)."""
    for name in PERTURBED:
        original = getattr(np, name)

        def nudged(*args: Any, _f: Any = original, **kwargs: Any) -> Any:
            out = _f(*args, **kwargs)
            return out * (1.0 + 2.0**-20) if np.issubdtype(np.asarray(out).dtype, np.floating) else out

        setattr(np, name, nudged)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _drought(out: dict[str, Any]) -> list[str]:
    import pandas as pd

    from models.drought.synthetic import SyntheticConfig, generate
    from models.drought.training import train_severity_model
    from models.registry import training_data_hash

    frame = generate(SyntheticConfig(n_regions=10, n_years=14, seed=5))
    out["synthetic_frame"] = training_data_hash(frame.drop(columns=["date"]).assign(date=frame["date"]))
    out["synthetic_rows"] = len(frame)
    result = train_severity_model(frame, seed=3)
    out["drought_artifact"] = _sha(result.artifact)
    out["drought_metrics"] = result.metrics.as_dict()
    return list(pd.unique(frame["region"]))


def _breach(out: dict[str, Any]) -> None:
    from models.coldchain.breach_model import train
    from models.coldchain.simulator import SimulatorConfig

    trained = train(simulator=SimulatorConfig(n_shipments=48, seed=3), seed=3)
    out["breach_artifact"] = _sha(trained.artifact)


def _drought_decisions(out: dict[str, Any], n: int, tmp: Path) -> list[str]:
    """``n`` region-months through the recorded steps: zonal mean of a GeoTIFF, features, score, report."""
    from affine import Affine

    from models.drought.severity import DEFAULT_MODEL_DIRECTORY, load_shipped
    from models.registry import load_model
    from oracle.decisions.drought import features_step, report_step, score_step, zonal_mean_step
    from oracle.decisions.trace import canonical_json
    from oracle.storage.blobs import cid_for
    from tests.fixtures.rasters import geotiff_bytes

    _, card = load_shipped()
    artifact, _ = load_model(DEFAULT_MODEL_DIRECTORY, card.model_id_hex)
    rng = np.random.default_rng(11)
    cids: list[str] = []
    region = {
        "type": "Feature",
        "id": "r1",
        "properties": {"region_id": "r1"},
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[10.1, 0.1], [10.9, 0.2], [10.7, 0.9], [10.2, 0.8], [10.1, 0.1]]],
        },
    }
    for i in range(n):
        year = 2010 + i // 12
        month = i % 12 + 1
        period = f"{year:04d}-{month:02d}"
        field = (rng.gamma(2.0, 30.0, (40, 40)) * (0.3 + 0.05 * (i % 7))).astype(np.float32)
        raster = geotiff_bytes(
            field, transform=Affine(0.025, 0, 10.0, 0, -0.025, 1.0), tmp_dir=tmp, units="mm"
        )
        zonal = zonal_mean_step(
            raster,
            json.dumps(region).encode(),
            {"variable": "precip", "label": "precip_monthly", "units": "mm", "date": f"{period}-01"},
        )
        cids.append(cid_for(canonical_json(zonal)))
        parts: list[dict[str, Any]] = [zonal]
        for back in range(1, 36):
            index = year * 12 + month - 1 - back
            parts.append(
                {
                    "variable": "precip_monthly",
                    "date": f"{index // 12:04d}-{index % 12 + 1:02d}-01",
                    "mean": float(rng.gamma(1.5, 40.0)),
                }
            )
        for var, centre, spread in (("ndvi", 0.45, 0.1), ("lst", 28.0, 3.0), ("soil_moisture", 0.25, 0.08)):
            for y in range(year - 8, year + 1):
                parts.append(
                    {
                        "variable": var,
                        "date": f"{y:04d}-{month:02d}-01",
                        "mean": float(rng.normal(centre, spread)),
                    }
                )
        features = features_step(parts, {"period": period, "months": 36, "calibration": None})
        scored = score_step(features, artifact)
        fields = report_step(
            scored,
            {
                "region_id": "r1",
                "period": period,
                "inputs_root": "0x" + "11" * 32,
                "model_id": "0x" + card.model_id_hex,
            },
        )
        cids += [cid_for(canonical_json(x)) for x in (features, scored, fields)]
        out.setdefault("drought_values", []).append(int(fields["value"]))
    return cids


def _coldchain_decisions(out: dict[str, Any], n: int) -> list[str]:
    from models.coldchain.profiles import PROFILE_DIR
    from models.coldchain.simulator import SimulatorConfig, simulate_shipments
    from models.registry import list_models, load_model
    from oracle.commands.coldchain import DEFAULT_ARTIFACT_DIR
    from oracle.decisions.coldchain import model_step, rules_step, screen_step, verdict_report_step
    from oracle.decisions.trace import canonical_json
    from oracle.storage.blobs import cid_for

    card = list_models(DEFAULT_ARTIFACT_DIR)[0]
    artifact, _ = load_model(DEFAULT_ARTIFACT_DIR, card.model_id_hex)
    cids: list[str] = []
    for shipment in simulate_shipments(SimulatorConfig(n_shipments=n, seed=17, max_hours=48.0)):
        r = shipment.readings
        rows = [
            {
                "device": "d1",
                "seq": k,
                "ts_ms": int(r.ts_s[k]) * 1000,
                "temp_c": float(r.temp_c[k]),
                "door_open": bool(r.door_open[k]),
                "battery_pct": None if math.isnan(r.battery[k]) else float(r.battery[k]) * 100.0,
            }
            for k in range(len(r.ts_s))
        ]
        readings = {"shipment": shipment.shipment_id, "readings": rows}
        profile_yaml = (PROFILE_DIR / f"{shipment.profile}.yaml").read_bytes()
        screened = screen_step(readings, {"mode": "record"})
        rules = rules_step(
            readings, profile_yaml, {"profile": shipment.profile, "delivered": True, "now": None}
        )
        scored = model_step(readings, profile_yaml, artifact)
        fields = verdict_report_step(
            rules,
            scored,
            {
                "shipment": shipment.shipment_id,
                "observed_at": int(r.ts_s[-1]),
                "inputs_root": "0x" + "22" * 32,
                "model_id": "0x" + card.model_id_hex,
                "model_void_threshold": None,
            },
        )
        cids += [cid_for(canonical_json(x)) for x in (screened, rules, scored, fields)]
        out.setdefault("coldchain_values", []).append(int(fields["value"]))
    return cids


def main() -> None:
    if os.environ.get("PROBE_PERTURB_NUMPY") == "1":
        # numba builds its table of numpy ufuncs from numpy's namespace when it first compiles (or loads)
        # the zonal and raster loops of ingest._kernels; build it from the real ufuncs first. Those loops
        # only multiply, add and compare, so the perturbation still reaches everything it should.
        from ingest._kernels import warm_up

        warm_up()
        _perturb_numpy()
    from oracle.reports import Report, ReportKind, report_digest

    n = int(os.environ.get("PROBE_DECISIONS", "20"))
    out: dict[str, Any] = {
        "np_exp_half": float(np.exp(0.5)).hex(),
        "cpu": os.environ.get("NPY_DISABLE_CPU_FEATURES", ""),
    }
    _drought(out)
    _breach(out)
    with tempfile.TemporaryDirectory() as tmp:
        steps = _drought_decisions(out, n, Path(tmp)) + _coldchain_decisions(out, n)
    out["step_cids"] = _sha("\n".join(steps).encode())
    out["steps"] = len(steps)
    digests = []
    for i, value in enumerate(out["drought_values"] + out["coldchain_values"]):
        kind = ReportKind.DROUGHT_SEVERITY if i < len(out["drought_values"]) else ReportKind.COLDCHAIN_VERDICT
        report = Report(
            subject=bytes([i % 256]) * 32,
            kind=kind,
            value=value,
            epoch=i + 1,
            observed_at=1_700_000_000 + i,
            inputs_root=b"\x11" * 32,
            model_id=b"\x22" * 32,
        )
        digests.append(report_digest(report, chain_id=31337, router="0x" + "33" * 20).hex())
    out["report_digests"] = _sha("\n".join(digests).encode())
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
