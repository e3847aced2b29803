"""The scheduled early warning is recorded (its CID is in every cold-chain manifest), so it must be the
same bits on every CPU: the oracle's breach_model step with a schedule document, run in a fresh
interpreter natively, with numpy's SIMD extensions beyond its baseline turned off
(``NPY_DISABLE_CPU_FEATURES``), and with numpy's transcendental functions knocked off (a stand-in for a
CPU whose SIMD kernels round differently). See ``tests/models/test_determinism.py`` for the method."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.models.test_determinism import ROOT, _clean_env, dispatched_features


def probe(**env: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.models.warning_probe"],
        cwd=ROOT,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def native() -> dict[str, Any]:
    return probe()


def test_probe_scores_warnings_the_schedule_decides(native: dict[str, Any]) -> None:
    assert native["scored"] >= 80
    assert 0 < native["warnings"] < native["scored"]  # varied, not one constant answer
    assert native["ended_at_schedule"] > 0  # some forecasts end at the hand-over: the schedule counted


def test_reduced_simd_gives_the_same_warning_bits(native: dict[str, Any]) -> None:
    features = dispatched_features()
    if not features:
        pytest.fail("numpy dispatched no SIMD extension beyond its baseline here; nothing to turn off")
    reduced = probe(NPY_DISABLE_CPU_FEATURES=" ".join(features))
    assert reduced["cpu"] == " ".join(features)
    assert reduced["cids"] == native["cids"]


def test_numpy_transcendentals_do_not_reach_the_warning(native: dict[str, Any]) -> None:
    perturbed = probe(PROBE_PERTURB_NUMPY="1")
    assert perturbed["cids"] == native["cids"]
