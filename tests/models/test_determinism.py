"""Same bits on every CPU and thread count: training, decision steps and report digests.

Each setting runs :mod:`tests.models.determinism_probe` in its own interpreter, because numpy chooses its
SIMD kernels once, at import: natively; with every SIMD extension numpy dispatched to beyond its baseline
turned off (``NPY_DISABLE_CPU_FEATURES``, read from ``numpy.show_runtime()``'s data on this machine);
with one thread for OpenMP and BLAS; and with numpy's transcendental functions knocked off by a relative
2**-20, which stands in for a CPU whose SIMD kernels round differently from this one (this machine may
not have AVX-512, the CI machine may).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPARED = ("synthetic_frame", "drought_artifact", "breach_artifact", "step_cids", "report_digests")
#: Decisions of each kind per run: 100 drought region-months and 100 shipments, so every setting is
#: compared on 200 consecutive decisions (every step CID and report digest of each).
DECISIONS = 100


def _clean_env(**env: str) -> dict[str, str]:
    """This environment without the test's own switches (the whole suite may run with SIMD reduced)."""
    full = {
        k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "PROBE_PERTURB_NUMPY")
    }
    full.update(env)
    return full


def dispatched_features() -> list[str]:
    """The SIMD extensions numpy finds on this CPU beyond its build baseline (what can be turned off),
    asked of a fresh interpreter with numpy's defaults."""
    code = (
        "from numpy._core._multiarray_umath import __cpu_baseline__ as b, __cpu_dispatch__ as d, "
        "__cpu_features__ as f; print(' '.join(x for x in d if f.get(x) and x not in b))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.split()


def probe(**env: str) -> dict[str, Any]:
    full = {
        k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "PROBE_PERTURB_NUMPY")
    }
    full["PROBE_DECISIONS"] = str(DECISIONS)
    full.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "tests.models.determinism_probe"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def native() -> dict[str, Any]:
    return probe()


def test_probe_covers_both_decision_kinds(native: dict[str, Any]) -> None:
    assert native["steps"] == DECISIONS * 4 + DECISIONS * 4
    assert len(native["drought_values"]) + len(native["coldchain_values"]) == 200
    assert len(set(native["drought_values"])) > 10  # real, varied scores, not one constant
    assert set(native["coldchain_values"]) == {1, 2}  # breaches and clean deliveries both occur
    assert native["synthetic_rows"] > 1000


def test_reduced_simd_gives_the_same_bits(native: dict[str, Any]) -> None:
    features = dispatched_features()
    if not features:
        pytest.fail("numpy dispatched no SIMD extension beyond its baseline here; nothing to turn off")
    reduced = probe(NPY_DISABLE_CPU_FEATURES=" ".join(features))
    assert reduced["cpu"] == " ".join(features)
    for key in COMPARED:
        assert reduced[key] == native[key], key


def test_one_thread_gives_the_same_bits(native: dict[str, Any]) -> None:
    single = probe(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for key in COMPARED:
        assert single[key] == native[key], key


def test_numpy_transcendentals_do_not_reach_anything_hashed(native: dict[str, Any]) -> None:
    perturbed = probe(PROBE_PERTURB_NUMPY="1")
    # The perturbation is live: numpy's exp really answered differently in that process.
    assert perturbed["np_exp_half"] != native["np_exp_half"]
    assert float.fromhex(native["np_exp_half"]) == float(np.exp(0.5))
    for key in COMPARED:
        assert perturbed[key] == native[key], key
