"""Compute the scheduled early warnings that get recorded (and hashed into decision manifests) and print
their digests as one JSON line.

Run as ``python -m tests.models.warning_probe`` in a subprocess, once per machine setting;
``test_warning_determinism`` compares the lines. Synthetic shipments (the simulator, seed 23) are scored by
the oracle's ``breach_model`` step with a schedule document at several readings within two hours of the
hand-over, where the schedule changes the thermal forecast. ``PROBE_PERTURB_NUMPY=1`` knocks numpy's
transcendental functions off by a relative 2**-20 first (see ``tests.models.determinism_probe``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from typing import Any

#: Readings before the hand-over at which each shipment is scored (the last is 10 min before it).
BEFORE_S = (600, 1800, 3600, 5400)


def main() -> None:
    if os.environ.get("PROBE_PERTURB_NUMPY") == "1":
        from tests.models.determinism_probe import _perturb_numpy

        _perturb_numpy()
    import numpy as np

    from models.coldchain.breach_model import DEFAULT_ARTIFACT_DIR, MODEL_NAME
    from models.coldchain.profiles import PROFILE_DIR
    from models.coldchain.simulator import SimulatorConfig, simulate_shipments
    from models.registry import list_models, load_model
    from oracle.decisions.coldchain import model_step, schedule_document
    from oracle.decisions.trace import canonical_json
    from oracle.storage.blobs import cid_for

    card = [c for c in list_models(DEFAULT_ARTIFACT_DIR) if c.name == MODEL_NAME][-1]
    artifact, _ = load_model(DEFAULT_ARTIFACT_DIR, card.model_id_hex)
    n = int(os.environ.get("PROBE_SHIPMENTS", "24"))
    cids: list[str] = []
    out: dict[str, Any] = {"warnings": 0, "ended_at_schedule": 0, "scored": 0}
    for s in simulate_shipments(SimulatorConfig(n_shipments=n, seed=23, max_hours=36.0)):
        r = s.readings
        schedule = schedule_document(s.shipment_id, s.delivered_s, source="terms")
        cids.append(cid_for(canonical_json(schedule)))
        profile_yaml = (PROFILE_DIR / f"{s.profile}.yaml").read_bytes()
        for before in BEFORE_S:
            upto = int(np.searchsorted(r.ts_s, s.delivered_s - before, side="right"))
            if upto < 8:
                continue
            rows = [
                {
                    "device": "d1",
                    "seq": k,
                    "ts_ms": int(r.ts_s[k]) * 1000,
                    "temp_c": float(r.temp_c[k]),
                    "door_open": bool(r.door_open[k]),
                    "battery_pct": None if math.isnan(r.battery[k]) else float(r.battery[k]) * 100.0,
                }
                for k in range(upto)
            ]
            scored = model_step(
                {"shipment": s.shipment_id, "readings": rows}, profile_yaml, artifact, schedule
            )
            cids.append(cid_for(canonical_json(scored)))
            out["scored"] += 1
            out["warnings"] += int(scored["warning"])
            out["ended_at_schedule"] += int(scored["forecast"]["breach_at_s"] == s.delivered_s)
    out["cids"] = hashlib.sha256("\n".join(cids).encode()).hexdigest()
    out["cpu"] = os.environ.get("NPY_DISABLE_CPU_FEATURES", "")
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
