"""A round that never reaches k is set aside as stalled after a week, and an agreeing word reopens it.

The round driver runs against a real router on anvil (it asks the router whether the round settled);
the peers' URLs lead nowhere, so this node's own deliveries fail and back off, as with peers that are
down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import select

from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.network.membership import Member, Network, NodeIdentity
from oracle.network.rounds import STALL_AFTER_S, NodeRuntime, RoundDriver, accept_peer_signature, begin_round
from oracle.network.rounds import report_json as to_json
from oracle.reports import ReportKind, subject_id, typed_data
from oracle.signer.client import LocalSigner
from oracle.storage.network_tables import NetworkRound
from tests.fixtures.chain import ChainKit, make_report


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    c = open_context(Settings(env="dev", data_dir=tmp_path / "node", _env_file=None))  # type: ignore[call-arg]
    yield c
    c.close()


def _status(ctx: Context) -> str:
    with ctx.sessions() as s:
        return str(s.scalars(select(NetworkRound.status)).one())


def test_a_round_short_of_k_stalls_after_a_week_and_an_agreeing_signature_reopens_it(
    ctx: Context, chain: ChainKit
) -> None:
    me = NodeIdentity("node1", Account.create())
    members = tuple(
        Member(
            f"node{i + 1}",
            key.address,
            me.address if i == 0 else Account.create().address,
            f"http://127.0.0.1:{9 + i}",  # nothing listens there: deliveries fail and back off
        )
        for i, key in enumerate(chain.keys)
    )
    runtime = NodeRuntime(
        network=Network(name="t", threshold=2, members=members),
        identity=me,
        signer=LocalSigner(bytes(chain.keys[0].key)),
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
    )
    report = make_report(
        subject_id("region", "stall"), kind=ReportKind.DROUGHT_SEVERITY, value=1_200_000, epoch=7
    )
    begin_round(ctx, runtime, report, subject_name="stall")
    driver = RoundDriver(ctx, runtime, chain.w3)
    try:
        driver.tick(now=time.time())
        assert _status(ctx) == "collecting"  # one of k = 2
        driver.tick(now=time.time() + STALL_AFTER_S + 60)
        assert _status(ctx) == "stalled"
        assert runtime.counters["rounds_stalled"] == 1

        def message(account: object, value: int) -> dict[str, object]:
            r = make_report(report.subject, kind=report.kind, value=value, epoch=report.epoch)
            data = typed_data(r, chain_id=runtime.chain_id, router=runtime.router)
            sig = bytes(account.sign_typed_data(full_message=data).signature)  # type: ignore[attr-defined]
            return {"report": to_json(r), "signature": "0x" + sig.hex()}

        # A member that computed something else does not reopen it.
        got = accept_peer_signature(ctx, runtime, members[2], message(chain.keys[2], 4_900_000))
        assert got["agrees"] is False
        assert _status(ctx) == "stalled"
        driver.tick(now=time.time() + STALL_AFTER_S + 120)
        assert _status(ctx) == "stalled"  # no longer advanced every pass
        # A late agreeing signature does: the round reaches k and goes on to transmission.
        got = accept_peer_signature(ctx, runtime, members[1], message(chain.keys[1], report.value))
        assert got["agrees"] is True
        assert _status(ctx) == "collecting"
        driver.tick(now=time.time())
        assert _status(ctx) in ("ready", "queued")
    finally:
        runtime.client.close()
