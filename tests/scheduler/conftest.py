"""Scheduler fixtures: a context on a fresh database (SQLite and PostgreSQL), events as the chain
listener projects them, and the synthetic drought world built once and copied per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oracle.chain.listener import DecodedEvent, project
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.scheduler import SchedulerHandle, SchedulerOptions, start_scheduler

FAST = SchedulerOptions(leader_poll_s=0.2, chain_jobs=False, catch_up=False, store_poll_s=0.5)
POOL = "0x" + "11" * 20
ESCROW = "0x" + "22" * 20
ROUTER = "0x" + "33" * 20

_log_index = iter(range(10**9))


def event(contract: str, name: str, address: str = ROUTER, **args: Any) -> DecodedEvent:
    i = next(_log_index)
    return DecodedEvent(
        contract=contract,
        address=address,
        name=name,
        args=args,
        block_number=100 + i,
        block_hash="0x" + f"{i:064x}",
        tx_hash="0x" + f"{i + 1:064x}",
        log_index=0,
    )


def apply(ctx: Context, ev: DecodedEvent) -> None:
    """What the chain listener does before calling ``on_event``: project and commit."""
    with ctx.sessions() as s:
        project(s, ev)
        s.commit()


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Callable[..., Context]]:
    opened: list[Context] = []

    def make(database_url: str = "", data_dir: Path | None = None) -> Context:
        ctx = open_context(Settings(data_dir=data_dir or tmp_path / "data", database_url=database_url))
        opened.append(ctx)
        return ctx

    yield make
    for ctx in opened:
        ctx.close()


@pytest.fixture
def ctx(database_url: str, make_ctx: Callable[..., Context]) -> Context:
    """A migrated context on SQLite and on the real PostgreSQL, with the two world regions."""
    import json

    from ingest.observations import add_regions
    from tests.drought.world import REGIONS
    from tests.fixtures.rasters import region_feature_collection

    c = make_ctx(database_url)
    add_regions(c.sessions, c.blobs, json.dumps(region_feature_collection(REGIONS)).encode())
    return c


@pytest.fixture
def running(ctx: Context) -> Iterator[Callable[..., SchedulerHandle]]:
    handles: list[SchedulerHandle] = []

    def start(options: SchedulerOptions = FAST, context: Context | None = None) -> SchedulerHandle:
        h = start_scheduler(context or ctx, options)
        handles.append(h)
        return h

    yield start
    for h in handles:
        h.stop()


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir (SQLite + blobs) holding the synthetic drought world of ``tests/drought/world.py``."""
    from tests.drought.world import build_data_dir

    return build_data_dir(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(world_dir: Path, tmp_path: Path, make_ctx: Callable[..., Context]) -> Context:
    """A private copy of the world: tests may add decisions and jobs freely."""
    data = tmp_path / "world"
    shutil.copytree(world_dir, data)
    return make_ctx(data_dir=data)
