"""The network's report policy (deviation and heartbeat), against a real router on anvil."""

from __future__ import annotations

from eth_account import Account

from oracle.network.membership import Member, Network, NodeIdentity
from oracle.network.rounds import NodeRuntime, within_deviation
from oracle.reports import ReportKind, subject_id
from oracle.signer.client import LocalSigner
from tests.fixtures.chain import ChainKit, make_report

PERIOD_EPOCH = (2026 * 12 + 6 - 1) * 1000  # June 2026, first revision


def _runtime(chain: ChainKit, *, deviation: float, heartbeat_s: int) -> NodeRuntime:
    me = NodeIdentity("node1", Account.create())
    members = tuple(
        Member(
            f"node{i + 1}",
            Account.create().address,
            (me.address if i == 0 else Account.create().address),
            f"http://127.0.0.1:{9100 + i}",
        )
        for i in range(3)
    )
    network = Network(name="t", threshold=2, members=members, deviation=deviation, heartbeat_s=heartbeat_s)
    return NodeRuntime(
        network=network,
        identity=me,
        signer=LocalSigner(Account.create().key),
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
    )


def test_a_revision_is_signed_only_when_it_moves_past_the_deviation_or_the_heartbeat_passed(
    chain: ChainKit,
) -> None:
    subject = subject_id("region", "policy-test")
    observed = int(chain.w3.eth.get_block("latest")["timestamp"]) - 3600
    first = make_report(
        subject, kind=ReportKind.DROUGHT_SEVERITY, value=2_000_000, epoch=PERIOD_EPOCH, observed_at=observed
    )
    runtime = _runtime(chain, deviation=0.1, heartbeat_s=86_400)
    assert within_deviation(runtime, chain.w3, first) is None  # nothing on-chain yet: sign
    chain.submit(first)
    small = make_report(
        subject,
        kind=ReportKind.DROUGHT_SEVERITY,
        value=2_050_000,
        epoch=PERIOD_EPOCH + 1,
        observed_at=observed,
    )
    reason = within_deviation(runtime, chain.w3, small, now=observed + 60)
    assert reason is not None
    assert "0.050 < deviation 0.1" in reason
    big = make_report(
        subject,
        kind=ReportKind.DROUGHT_SEVERITY,
        value=2_150_000,
        epoch=PERIOD_EPOCH + 1,
        observed_at=observed,
    )
    assert within_deviation(runtime, chain.w3, big, now=observed + 60) is None
    # The heartbeat passed: even a small move is signed.
    assert within_deviation(runtime, chain.w3, small, now=observed + 86_400 + 1) is None
    # A new period is always signed, and so is a cold-chain verdict.
    next_month = make_report(
        subject,
        kind=ReportKind.DROUGHT_SEVERITY,
        value=2_000_000,
        epoch=PERIOD_EPOCH + 1000,
        observed_at=observed,
    )
    assert within_deviation(runtime, chain.w3, next_month, now=observed + 60) is None
    verdict = make_report(subject_id("shipment", "x"), kind=ReportKind.COLDCHAIN_VERDICT, value=1, epoch=1)
    assert within_deviation(runtime, chain.w3, verdict) is None
