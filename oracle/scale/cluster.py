"""The dask.distributed client for gridded work: one boundary, started only when work needs it.

``ORACLE_DASK_SCHEDULER`` (see :class:`oracle.config.Settings`) chooses the scheduler:

* ``tcp://HOST:PORT``: connect to a running scheduler (a real cluster). Closing only disconnects.
* empty or ``local[:N]``: a :class:`~distributed.LocalCluster` on 127.0.0.1 with N worker processes
  (default: the CPU count, at most :data:`MAX_DEFAULT_WORKERS`), one thread each (the gridded functions
  are single-threaded numpy; processes sidestep the GIL), no dashboard. It is started at the first
  :func:`shared_client` call, so ``oracle run`` pays nothing for it until a large evaluation comes, and
  closed at interpreter exit (or by :func:`close_shared`).
* ``off``: :func:`shared_client` returns ``None`` and callers compute in this process.

Dask's own errors (an unreachable scheduler, a cluster that does not start) become
:class:`~oracle.errors.ConfigError` here, naming the variable to fix.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from oracle.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

    from oracle.config import Settings

log = logging.getLogger(__name__)

#: Workers of a LocalCluster when ``local`` names no count: more would only share the same cores.
MAX_DEFAULT_WORKERS = 4
#: Seconds to reach a remote scheduler before giving up.
CONNECT_TIMEOUT_S = 10.0

_lock = threading.Lock()
_shared: Client | None = None


#: glibc allocator settings for the worker processes of a LocalCluster (set before they start).
#: distributed sets ``MALLOC_TRIM_THRESHOLD_=65536`` for its workers, which also freezes glibc's mmap
#: threshold at 128 KiB: every array of a raster (a 1500×1600 float64 day is 19 MB) is then a fresh
#: mmap whose pages fault in one by one, and a worker read a day in twice the time this process did.
#: Arrays up to 64 MiB come from the heap instead, and up to 256 MiB of freed heap is kept for reuse.
#: Workers of a real cluster (``ORACLE_DASK_SCHEDULER``) want the same environment (README.md).
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": 64 << 20, "MALLOC_TRIM_THRESHOLD_": 256 << 20}


def default_workers() -> int:
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def start_local(n_workers: int | None = None, *, processes: bool = True) -> Client:
    """A new LocalCluster on 127.0.0.1 (worker processes, one thread each, no dashboard) and its client.

    ``processes=False`` runs the workers as threads of this process (a probe that must share this
    interpreter's settings). Closing the client (:func:`close`) also closes the cluster.
    """
    import dask

    dist = _distributed()
    environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()}
    try:
        with dask.config.set(environ):  # read by each worker's nanny as the cluster starts
            cluster = dist.LocalCluster(
                n_workers=n_workers or default_workers(),
                threads_per_worker=1,
                processes=processes,
                host="127.0.0.1",
                protocol="tcp://",
                dashboard_address=None,
                silence_logs=logging.WARNING,
            )
    except Exception as e:  # distributed raises plain RuntimeError/OSError/TimeoutError here
        raise ConfigError(f"ORACLE_DASK_SCHEDULER: the local Dask cluster did not start ({e})") from e
    client: Client = dist.Client(cluster, set_as_default=False)
    log.info(
        "dask local cluster started workers=%d scheduler=%s", len(cluster.workers), cluster.scheduler_address
    )
    return client


def connect(address: str) -> Client:
    """A client of the running scheduler at ``address`` (``tcp://HOST:PORT``)."""
    try:
        client: Client = _distributed().Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ConfigError(f"ORACLE_DASK_SCHEDULER: no Dask scheduler answers at {address} ({e})") from e
    log.info("dask scheduler connected address=%s", address)
    return client


def close(client: Client) -> None:
    """Disconnect ``client``; a LocalCluster it started (see :func:`start_local`) is shut down too."""
    cluster = client.cluster
    _untyped(client).close()
    if cluster is not None:
        cluster.close()


def _distributed() -> Any:
    """The ``distributed`` package, untyped (most of its API carries no annotations)."""
    import distributed

    return distributed


def _untyped(client: Client) -> Any:
    return client


@contextmanager
def local_client(n_workers: int | None = None, *, processes: bool = True) -> Iterator[Client]:
    """A private LocalCluster for the duration of a ``with`` block (benches, tests)."""
    client = start_local(n_workers, processes=processes)
    try:
        yield client
    finally:
        close(client)


def client_for(settings: Settings) -> Client | None:
    """A new client as ``settings.dask_scheduler`` says, or ``None`` for ``off``."""
    choice = settings.dask_scheduler
    if choice == "off":
        return None
    if choice.startswith("tcp://"):
        return connect(choice)
    _, _, count = choice.partition(":")
    return start_local(int(count) if count else None)


def shared_client(settings: Settings | None = None) -> Client | None:
    """The process's client, created at the first call (settings read then); ``None`` when ``off``."""
    global _shared
    with _lock:
        if _shared is None:
            if settings is None:
                from oracle.config import load_settings

                settings = load_settings()
            if settings.dask_scheduler == "off":
                return None
            _shared = client_for(settings)
        return _shared


def close_shared() -> None:
    """Close the process's client (and its LocalCluster) if one was started; safe to call twice."""
    global _shared
    with _lock:
        client, _shared = _shared, None
    if client is not None:
        close(client)


atexit.register(close_shared)
