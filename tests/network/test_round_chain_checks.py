"""The round driver asks the router about a round when it has reason to, not every pass for every round.

A node with a hundred open rounds asked the router's ``latest()`` once per round every half second and
spent most of its time doing so. Now each pass reads the router's new ``ReportAccepted`` events once;
a round asks on its first look, when its subject shows up in those events, right before it would
transmit, and otherwise every ``CHAIN_CHECK_S``. Against a real router on anvil; the peers' URLs lead
nowhere (deliveries fail and back off).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select

from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.network.membership import Member, Network, NodeIdentity
from oracle.network.rounds import CHAIN_CHECK_S, NodeRuntime, RoundDriver, begin_round
from oracle.reports import ReportKind, subject_id
from oracle.signer.client import LocalSigner
from oracle.storage.network_tables import NetworkRound
from tests.fixtures.chain import ChainKit, make_report

ROUNDS = 30


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    c = open_context(Settings(env="dev", data_dir=tmp_path / "node", _env_file=None))  # type: ignore[call-arg]
    yield c
    c.close()


class CountingRouter:
    """The driver's router contract, counting ``latest()`` calls."""

    def __init__(self, router: Any) -> None:
        self._router = router
        self.latest_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._router, name)

    @property
    def functions(self) -> Any:
        outer = self

        class Functions:
            def __getattr__(self, name: str) -> Any:
                fn = getattr(outer._router.functions, name)
                if name != "latest":
                    return fn

                def counted(*args: Any) -> Any:
                    outer.latest_calls += 1
                    return fn(*args)

                return counted

        return Functions()


def _statuses(ctx: Context) -> dict[int, str]:
    with ctx.sessions() as s:
        return {int(r.epoch): str(r.status) for r in s.scalars(select(NetworkRound)).all()}


def test_rounds_ask_the_router_on_its_events_not_every_pass(ctx: Context, chain: ChainKit) -> None:
    me = NodeIdentity("node1", Account.create())
    members = tuple(
        Member(
            f"node{i + 1}",
            key.address,
            me.address if i == 0 else Account.create().address,
            f"http://127.0.0.1:{9 + i}",  # nothing listens there
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
    reports = [
        make_report(
            subject_id("region", f"checks-{i}"), kind=ReportKind.DROUGHT_SEVERITY, value=1_000, epoch=7 + i
        )
        for i in range(ROUNDS)
    ]
    for i, report in enumerate(reports):
        begin_round(ctx, runtime, report, subject_name=f"checks-{i}")
    driver = RoundDriver(ctx, runtime, chain.w3)
    router = CountingRouter(driver._router)
    driver._router = router
    try:
        start = time.time()
        driver.tick(now=start)
        assert router.latest_calls == ROUNDS  # each round's first look asks
        driver.tick(now=start + 0.6)
        driver.tick(now=start + 1.2)
        assert router.latest_calls == ROUNDS  # nothing landed, nothing asked again

        # Someone else lands round 5's very report (k = 2 signatures): only that round asks, and settles.
        chain.submit(reports[5], chain.sign(reports[5], chain.keys[:2]))
        driver.tick(now=start + 1.8)
        assert router.latest_calls == ROUNDS + 1
        statuses = _statuses(ctx)
        assert statuses[reports[5].epoch] == "landed"
        assert [e for e, st in statuses.items() if st != "collecting"] == [reports[5].epoch]

        # The fallback: after CHAIN_CHECK_S every open round asks once more.
        driver.tick(now=start + 1.8 + CHAIN_CHECK_S)
        assert router.latest_calls == ROUNDS + 1 + (ROUNDS - 1)
    finally:
        runtime.client.close()
