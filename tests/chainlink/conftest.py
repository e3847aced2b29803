"""Fixtures for the Chainlink tests: the synthetic drought world built once per session and copied per
test (so each test owns its database), an API context on such a copy, and a contract set with Chainlink's
LinkToken and Operator, the oracle's transmitter authorised, and a funded ChainlinkClient consumer."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from oracle.chain.client import transact
from oracle.chain.deploy import Deployment, deploy_all, deploy_contract
from oracle.chainlink.setup import job_id_for, setup_direct_requests
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.storage import migrate
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.db import make_engine, session_factory
from tests.drought.world import build
from tests.fixtures.chain import POOL_FUNDING, Accounts

#: 0.1 LINK per request (juels), the consumer's default fee and the jobs' minimum payment.
FEE = 10**17
LINK_FUNDING = 10 * 10**18


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the drought world (SQLite + blobs); copy it, never open it directly."""
    root = tmp_path_factory.mktemp("chainlink-world")
    data = root / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'oracle.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    build(session_factory(engine), FilesystemBlobStore(data / "blobs"), root)
    engine.dispose()  # checkpoint the WAL so a file copy holds everything
    return data


def open_world(template: Path, dest: Path) -> Context:
    shutil.copytree(template, dest)
    settings = Settings(
        env="dev",
        data_dir=dest,
        database_url=f"sqlite:///{dest / 'oracle.sqlite3'}",
        _env_file=None,  # type: ignore[call-arg]
    )
    return open_context(settings)


@pytest.fixture
def world_ctx(world_template: Path, tmp_path: Path) -> Iterator[Context]:
    ctx = open_world(world_template, tmp_path / "data")
    yield ctx
    ctx.close()


@dataclass(frozen=True)
class DirectKit:
    w3: Web3
    deployment: Deployment
    deployer: LocalAccount
    transmitter: LocalAccount
    jobs: dict[str, str]
    consumer: Contract

    @property
    def operator(self) -> Contract:
        return self.deployment.contract(self.w3, "Operator")

    @property
    def link(self) -> Contract:
        return self.deployment.contract(self.w3, "LinkToken")

    @property
    def drought_job(self) -> bytes:
        return job_id_for("drought-severity")


@pytest.fixture
def direct(w3: Web3, accounts: Accounts, oracle_keys: tuple[LocalAccount, ...]) -> DirectKit:
    deployment = deploy_all(
        w3,
        deployer=accounts.deployer,
        signers=[k.address for k in oracle_keys],
        threshold=2,
        pool_funding=POOL_FUNDING,
        chainlink=True,
    )
    jobs = setup_direct_requests(
        w3, deployment, deployer=accounts.deployer, transmitter_address=accounts.relayer.address
    )
    consumer = deploy_contract(
        w3,
        "DroughtSeverityConsumer",
        deployment.address("LinkToken"),
        deployment.address("Operator"),
        job_id_for("drought-severity"),
        FEE,
        deployer=accounts.deployer,
    )
    link = deployment.contract(w3, "LinkToken")
    transact(w3, link.functions.grantMintRole(accounts.deployer.address), sender=accounts.deployer)
    transact(w3, link.functions.mint(consumer.address, LINK_FUNDING), sender=accounts.deployer)
    return DirectKit(
        w3=w3,
        deployment=deployment,
        deployer=accounts.deployer,
        transmitter=accounts.relayer,
        jobs=jobs,
        consumer=consumer,
    )
