"""The drought pipeline as an operator drives it: oracle regions add, ingest raster, zonal, evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from shapely.geometry import box

from tests.drought.world import TRANSFORM
from tests.fixtures.rasters import region_feature_collection, write_geotiff


def _oracle(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env["ORACLE_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [sys.executable, "-c", "from oracle.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_regions_ingest_zonal_and_quarantine(tmp_path: Path) -> None:
    regions = tmp_path / "regions.geojson"
    regions.write_text(
        json.dumps(
            region_feature_collection(
                {"west": box(36.0, -1.0, 36.5, 0.0), "east": box(36.5, -1.0, 37.0, 0.0)}
            )
        )
    )
    values = np.full((20, 20), 10.0, dtype=np.float32)
    values[:, 10:] = 30.0
    values[0, 0] = -9999.0
    raster = write_geotiff(
        tmp_path / "chirps.tif",
        values,
        transform=TRANSFORM,
        nodata=-9999.0,
        units="mm",
        time="2026-05-01T00:00:00Z",
    )

    added = _oracle(tmp_path, "regions", "add", str(regions))
    assert added.returncode == 0, added.stderr
    assert added.stdout.split() == ["west", "east"]

    zonal = _oracle(tmp_path, "zonal", "--raster", str(raster), "--regions", str(regions))
    assert zonal.returncode == 0, zonal.stderr
    rows = [line.split(",") for line in zonal.stdout.strip().splitlines()]
    assert rows[0] == ["region_id", "mean", "valid_fraction"]
    means = {r[0]: float(r[1]) for r in rows[1:]}
    assert abs(means["west"] - 10.0) < 1e-6
    assert abs(means["east"] - 30.0) < 1e-6
    assert float(rows[1][2]) < 1.0  # the nodata pixel is excluded, not counted as zero

    ok = _oracle(tmp_path, "ingest", "raster", str(raster), "--variable", "precip")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("accepted bafkrei")
    again = _oracle(tmp_path, "ingest", "raster", str(raster), "--variable", "precip")
    assert again.stdout.startswith("already stored")

    broken = tmp_path / "broken.tif"
    broken.write_bytes(raster.read_bytes()[:300])
    bad = _oracle(tmp_path, "ingest", "raster", str(broken), "--variable", "precip")
    assert bad.returncode == 1
    assert "quarantined" in bad.stderr
    assert "corrupt_file" in bad.stderr
    assert "Traceback" not in bad.stderr

    evaluation = _oracle(tmp_path, "evaluate", "drought", "--region", "west", "--period", "2026-05")
    assert evaluation.returncode == 0, evaluation.stderr
    assert "incomplete" in evaluation.stdout  # one month of rain and no vegetation data: nothing to report
    unknown = _oracle(tmp_path, "evaluate", "drought", "--region", "nowhere", "--period", "2026-05")
    assert unknown.returncode == 1
    assert "not registered" in unknown.stderr
