"""Shared set-up for outbox tests: a migrated SQLite database, signers, policies in drought."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session, sessionmaker

from oracle.attest import Attestation, attest
from oracle.chain.anvil import AnvilProcess
from oracle.reports import Report, ReportKind, subject_id, to_fixed
from oracle.signer.client import LocalSigner
from oracle.storage import migrate
from oracle.storage.db import make_engine, session_factory
from tests.fixtures.chain import TEST_MODELS, Accounts, ChainKit

START, END = 1_700_000_000, 1_800_000_000
TRIGGER, EXIT, LIMIT = to_fixed(2.0), to_fixed(4.0), 1_000 * 10**6


def open_db(url: str) -> sessionmaker[Session]:
    migrate.upgrade(url)
    return session_factory(make_engine(url))


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'oracle.sqlite3'}"


def local_signers(keys: Sequence[LocalAccount]) -> list[LocalSigner]:
    return [LocalSigner(bytes(k.key)) for k in keys]


def create_policy(chain: ChainKit, region: bytes, insured: str) -> int:
    call = chain.pool.functions.createPolicy(insured, region, START, END, TRIGGER, EXIT, LIMIT)
    policy_id = int(call.call({"from": chain.accounts.deployer.address}))
    chain.send(call)
    return policy_id


def drought_report(region_name: str, *, epoch: int, severity: float) -> Report:
    return Report(
        subject=subject_id("region", region_name),
        kind=ReportKind.DROUGHT_SEVERITY,
        value=to_fixed(severity),
        epoch=epoch,
        observed_at=START + 86_400 * epoch,
        inputs_root=bytes(32),
        model_id=b"\x07" * 32,
    )


def post(sessions: sessionmaker[Session], chain: ChainKit, report: Report, name: str = "") -> Attestation:
    return attest(
        sessions,
        report,
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
        subject_name=name,
    )


@contextlib.contextmanager
def own_chain(accounts: Accounts, keys: Sequence[LocalAccount]) -> Iterator[tuple[AnvilProcess, ChainKit]]:
    """An anvil of the test's own (for tests that spike fees, cut the RPC or reorganise the chain, which
    must not disturb the session's shared chain), with the contracts deployed: k = 2 of ``keys``."""
    from oracle.chain.anvil import start_anvil
    from oracle.chain.client import connect
    from oracle.chain.deploy import deploy_all

    with start_anvil() as anvil:
        w3 = connect(anvil.url)
        dep = deploy_all(
            w3,
            deployer=accounts.deployer,
            signers=[k.address for k in keys],
            threshold=2,
            chainlink=False,
            models=TEST_MODELS,
        )
        yield anvil, ChainKit(w3=w3, accounts=accounts, keys=tuple(keys), deployment=dep)
