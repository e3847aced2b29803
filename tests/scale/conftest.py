"""A LocalCluster of two worker processes for the whole folder (closed after it), and the synthetic
drought world of ``tests/drought/world.py`` built once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from oracle.scale.cluster import local_client

if TYPE_CHECKING:
    from distributed import Client


@pytest.fixture(scope="session")
def cluster() -> Iterator[Client]:
    with local_client(2) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.drought.world import build_data_dir

    return build_data_dir(tmp_path_factory.mktemp("world"))
