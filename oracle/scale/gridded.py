"""Gridded work on dask.distributed: zonal means, gridded SPI and the drought decision's zonal steps.

Each function maps a pure function over independent chunks and puts the pieces back in order, so the
distributed result is the single-process result bit for bit (same float bits, hence the same step CIDs):

* zonal means of a (time, y, x) stack: chunks of days; every day's means are one sparse product whose
  sums run in the same order whatever the chunk (:meth:`ingest.zonal.ZonalWeights.means_stack`);
* gridded SPI: blocks of rows; SPI is fitted per pixel along time, so pixels never meet
  (:func:`models.drought.spi.spi_cube`);
* the drought decision's ``zonal_mean_step`` calls: one task per raster, the step function itself run on
  a worker, outputs handed back in the caller's order and recorded by the caller as before.

With ``client=None`` every function computes in this process: that is the reference path.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from models.drought.spi import Calibration, spi_cube

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

    from ingest.zonal import ZonalWeights
    from oracle.storage.blobs import BlobStore

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Days per zonal-means task when a stack arrives unchunked.
TIME_CHUNK = 16
#: An evaluation whose rasters weigh this much in total (stored, compressed bytes) is "large": its
#: zonal steps go to the Dask cluster (see :func:`zonal_steps_for`).
LARGE_EVALUATION_BYTES = 256 * 1024**2
#: Raster blobs kept on the cluster between evaluations of one run, and step outputs remembered.
RASTERS_KEPT = 128
OUTPUTS_KEPT = 200_000


# -- zonal means of a stack ---------------------------------------------------------------------------


def zonal_means_stack(
    stack: xr.DataArray, weights: ZonalWeights, *, client: Client | None = None
) -> tuple[FloatArray, FloatArray]:
    """Zonal means of a (time, y, x) stack: ``(means, valid_fraction)``, each (regions, time).

    A Dask-backed stack (e.g. lazily read files) is processed chunk of days by chunk of days where its
    chunks live; an in-memory one is cut into :data:`TIME_CHUNK` days. ``client=None``: in this process.
    """
    if client is None:
        return weights.means_stack(np.asarray(stack.values, dtype=np.float64))
    from dask.delayed import delayed

    da, c = _dask_array(), _untyped(client)
    shared = c.scatter(weights, broadcast=True, hash=False)
    data = stack.data
    if isinstance(data, da.Array):
        # One means task per chunk, fed by that chunk's own task where it runs: a chunk is freed as
        # soon as its means are taken, so memory holds a few chunks, not the stack.
        blocks = data.rechunk({1: -1, 2: -1}).to_delayed().ravel()
        parts = c.gather(c.compute([delayed(_means_block)(shared, block) for block in blocks]))
    else:
        pieces = c.scatter(_split(np.asarray(data), axis=0, size=TIME_CHUNK), hash=False)
        parts = c.gather([c.submit(_means_block, shared, piece, pure=False) for piece in pieces])
    means = np.concatenate([p[0] for p in parts], axis=1)
    fraction = np.concatenate([p[1] for p in parts], axis=1)
    return means, fraction


def _means_block(weights: ZonalWeights, block: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    return weights.means_stack(np.asarray(block, dtype=np.float64))


def read_stack(
    paths: Sequence[Path], *, variable: str, times: Sequence[Any], grid_shape: tuple[int, int]
) -> xr.DataArray:
    """A lazy (time, y, x) DataArray of the rasters at ``paths``, one Dask chunk per file, labelled with
    ``times``; each file is read with :func:`ingest.raster.read_raster` (validated) on the worker that
    computes its chunk, so the paths must be readable there (a shared or object-store mount on a cluster)."""
    import xarray as xr
    from dask.delayed import delayed

    da = _dask_array()
    layers = [
        da.from_delayed(delayed(_read_values)(str(p), variable), shape=grid_shape, dtype=np.float64)
        for p in paths
    ]
    return xr.DataArray(
        da.stack(layers), dims=("time", "y", "x"), coords={"time": list(times)}, name=variable
    )


def _read_values(path: str, variable: str) -> FloatArray:
    import datetime as dt

    from ingest.raster import read_raster

    far_future = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)  # the files' dates were checked when written
    grid = read_raster(Path(path).read_bytes(), variable=variable, now=far_future)
    values: FloatArray = np.asarray(grid.values, dtype=np.float64)
    return values


# -- gridded SPI --------------------------------------------------------------------------------------


def spi_grid(
    cube: xr.DataArray,
    *,
    scale: int,
    calibration: Calibration = None,
    start_year: int | None = None,
    start_month: int = 1,
    client: Client | None = None,
    block_rows: int | None = None,
) -> xr.DataArray:
    """SPI of every pixel of a (time, y, x) monthly precipitation cube, as a DataArray like ``cube``.

    Arguments as :func:`models.drought.spi.spi_cube`. With a client, blocks of ``block_rows`` rows
    (default: two blocks per worker) are fitted on the workers. Keep at least two pixels per block (a
    one-pixel block sums along time in numpy's pairwise order, not row by row).
    """
    import xarray as xr

    kwargs: dict[str, Any] = {
        "scale": scale,
        "calibration": calibration,
        "start_year": start_year,
        "start_month": start_month,
    }
    if client is None:
        values = spi_cube(np.asarray(cube.values, dtype=np.float64), **kwargs)
    else:
        da, c = _dask_array(), _untyped(client)
        rows = cube.shape[1]
        workers = max(1, len(client.scheduler_info()["workers"]))
        block_rows = block_rows or max(1, -(-rows // (2 * workers)))
        data = cube.data
        if isinstance(data, da.Array):
            blocks = data.rechunk({0: -1, 1: block_rows, 2: -1})
            values = c.compute(blocks.map_blocks(spi_cube, dtype=np.float64, **kwargs)).result()
        else:
            # Each block is sent once, straight to a worker (a graph built on the whole array would
            # ship all of it to every worker).
            pieces = c.scatter(
                _split(np.asarray(data, dtype=np.float64), axis=1, size=block_rows), hash=False
            )
            parts = c.gather([c.submit(spi_cube, piece, pure=False, **kwargs) for piece in pieces])
            values = np.concatenate(parts, axis=1)
    return xr.DataArray(values, dims=cube.dims, coords=cube.coords, name="spi")


def _split(array: npt.NDArray[Any], *, axis: int, size: int) -> list[npt.NDArray[Any]]:
    """Contiguous copies of consecutive ``size``-long slices of ``array`` along ``axis``."""
    return [
        np.ascontiguousarray(np.take(array, np.arange(i, min(i + size, array.shape[axis])), axis=axis))
        for i in range(0, array.shape[axis], size)
    ]


def _dask_array() -> Any:
    """``dask.array``, untyped (it ships no annotations mypy can follow)."""
    import dask.array

    return dask.array


def _untyped(client: Client) -> Any:
    """The client as ``Any``: most of distributed's methods carry no annotations."""
    return client


# -- the drought decision's zonal steps ---------------------------------------------------------------

ZonalJob = tuple[str, dict[str, Any]]
"""One zonal step of a decision: the raster's CID and the step's parameters."""


class ZonalSteps(Protocol):
    """Runs ``zonal_mean_step`` of one region over rasters; outputs in the order of ``jobs``."""

    def __call__(
        self, blobs: BlobStore, region_cid: str, jobs: Sequence[ZonalJob]
    ) -> list[dict[str, Any]]: ...


def local_zonal_steps(blobs: BlobStore, region_cid: str, jobs: Sequence[ZonalJob]) -> list[dict[str, Any]]:
    """The single-process path: one step after the other, in this process."""
    from oracle.decisions.drought import zonal_mean_step

    region = blobs.get(region_cid)
    return [zonal_mean_step(blobs.get(cid), region, params) for cid, params in jobs]


def _zonal_task(raster: bytes, region: bytes, params: dict[str, Any]) -> dict[str, Any]:
    from oracle.decisions.drought import zonal_mean_step

    return zonal_mean_step(raster, region, params)


class DaskZonalSteps:
    """``zonal_mean_step`` calls on a Dask cluster, one task per (raster, region).

    A step is pure, so its output is remembered per (raster, region, parameters) for the life of this
    object: a backfill evaluates each month's rasters for many periods and computes each pair once. Raster
    bytes are sent to the cluster once and kept there for the next evaluations (the last
    :data:`RASTERS_KEPT`).
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._outputs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._rasters: OrderedDict[str, Any] = OrderedDict()  # CID → distributed.Future
        self.computed = 0
        self.reused = 0

    def __call__(self, blobs: BlobStore, region_cid: str, jobs: Sequence[ZonalJob]) -> list[dict[str, Any]]:
        keys = [_job_key(cid, region_cid, params) for cid, params in jobs]
        todo: dict[str, ZonalJob] = {}
        for key, job in zip(keys, jobs, strict=True):
            if key not in self._outputs:
                todo.setdefault(key, job)
        self.reused += len(keys) - len(todo)
        if todo:
            region = blobs.get(region_cid)
            rasters = self._rasters_on_cluster(blobs, [cid for cid, _ in todo.values()])
            futures = [
                self.client.submit(_zonal_task, rasters[cid], region, params, key=f"zonal-step-{key}")
                for key, (cid, params) in todo.items()
            ]
            for key, out in zip(todo, _untyped(self.client).gather(futures), strict=True):
                self._outputs[key] = out
            self.computed += len(todo)
            while len(self._outputs) > OUTPUTS_KEPT:
                self._outputs.popitem(last=False)
        # Copies: a caller may change what it is handed; the remembered outputs must not change.
        return [copy.deepcopy(self._outputs[k]) for k in keys]

    def _rasters_on_cluster(self, blobs: BlobStore, cids: list[str]) -> dict[str, Any]:
        """Futures of the rasters' bytes on the cluster; the missing ones are sent in one scatter."""
        missing = list(dict.fromkeys(c for c in cids if c not in self._rasters))
        if missing:
            sent = _untyped(self.client).scatter([blobs.get(c) for c in missing], hash=False)
            self._rasters.update(zip(missing, sent, strict=True))
        wanted = {c: self._rasters[c] for c in cids}
        for cid in wanted:
            self._rasters.move_to_end(cid)
        while len(self._rasters) > max(RASTERS_KEPT, len(wanted)):
            self._rasters.popitem(last=False)
        return wanted


def _job_key(raster_cid: str, region_cid: str, params: dict[str, Any]) -> str:
    text = json.dumps([raster_cid, region_cid, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def zonal_steps_for(blobs: BlobStore, jobs: Sequence[ZonalJob]) -> ZonalSteps:
    """The Dask path for a large evaluation (rasters of :data:`LARGE_EVALUATION_BYTES` or more in total,
    and ``ORACLE_DASK_SCHEDULER`` not ``off``), else the single-process path. The process's shared client
    (:func:`oracle.scale.cluster.shared_client`) is started here, at the first large evaluation."""
    total = sum(_blob_size(blobs, cid) for cid, _ in jobs)
    if total < LARGE_EVALUATION_BYTES:
        return local_zonal_steps
    from oracle.scale.cluster import shared_client

    client = shared_client()
    if client is None:
        return local_zonal_steps
    log.info("large evaluation: %d rasters, %d bytes, on Dask", len(jobs), total)
    return DaskZonalSteps(client)


def _blob_size(blobs: BlobStore, cid: str) -> int:
    path = getattr(blobs, "path", None)
    if callable(path):
        located = path(cid)
        if isinstance(located, Path) and located.exists():
            return located.stat().st_size
    return len(blobs.get(cid))
