"""Direct requests through Chainlink's own Operator (``@chainlink/contracts`` 1.2.0) on a real anvil: a
ChainlinkClient consumer pays LINK and asks for a drought severity; the follower sees ``OracleRequest``,
evaluates the synthetic drought world, and the outbox poster fulfils with ``fulfillOracleRequest2``."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, func, select
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from oracle.chain.client import transact, translate_errors
from oracle.chain.outbox import OutboxPoster
from oracle.chainlink.requests import DirectRequestConfig, OracleRequestFollower, request_key
from oracle.chainlink.setup import parse_jobs
from oracle.chainlink.tasks import scaled
from oracle.context import Context
from oracle.decisions.drought import evaluate_drought
from oracle.errors import RevertError
from oracle.storage.tables import ChainCursor, OutboxRow, Reject
from tests.chainlink.conftest import FEE, DirectKit
from tests.drought.world import PERIOD

pytestmark = pytest.mark.chain


def follower(ctx: Context, kit: DirectKit, **overrides: Any) -> OracleRequestFollower:
    job = kit.drought_job
    config = DirectRequestConfig(
        operator=kit.deployment.address("Operator"),
        jobs=parse_jobs(kit.jobs),
        min_payment={job: FEE},
        confirmations=0,
        start_block=kit.deployment.block,
        **overrides,
    )
    return OracleRequestFollower(ctx.sessions, ctx.blobs, kit.w3, config)


def ask(kit: DirectKit, call: Any) -> tuple[bytes, dict[str, Any]]:
    """Send a consumer request; returns its request id and the Operator's OracleRequest args."""
    receipt = transact(kit.w3, call, sender=kit.deployer)
    (asked,) = kit.consumer.events.SeverityRequested().process_receipt(receipt, errors=DISCARD)
    (event,) = kit.operator.events.OracleRequest().process_receipt(receipt, errors=DISCARD)
    return bytes(asked["args"]["requestId"]), dict(event["args"])


def responses(kit: DirectKit, request_id: bytes) -> int:
    logs = kit.operator.events.OracleResponse().get_logs(
        from_block=kit.deployment.block, argument_filters={"requestId": request_id}
    )
    return len(logs)


def answer(consumer: Contract, region: str, period: str) -> int:
    with translate_errors("severity"):
        value, _ = consumer.functions.severity(region, period).call()
    return int(value)


def test_round_trip_fulfils_the_real_value_once(world_ctx: Context, direct: DirectKit) -> None:
    request_id, event = ask(direct, direct.consumer.functions.requestDroughtSeverity("dry", PERIOD))
    assert event["dataVersion"] == 2
    assert bytes(event["specId"]) == direct.drought_job
    operator_link_before = direct.link.functions.balanceOf(direct.operator.address).call()

    f = follower(world_ctx, direct)
    polled = f.poll()
    assert [(h.request_id, h.outcome) for h in polled.handled] == [(request_id, "queued")]

    # The value is the evaluation's own score, computed here independently of the follower.
    outcome = evaluate_drought(world_ctx.sessions, world_ctx.blobs, region_id="dry", period=PERIOD)
    assert outcome.score is not None
    expected = scaled(outcome.score, 10_000)
    assert polled.handled[0].value == expected
    assert expected == round(outcome.score * 10_000)
    assert 20_000 < expected <= 50_000  # the dry region is in drought (severity above 2)

    settled = OutboxPoster(world_ctx.sessions, direct.w3, direct.transmitter).run_until_settled(timeout=60)
    assert settled.open == 0
    with world_ctx.sessions() as s:
        row = s.scalar(select(OutboxRow).where(OutboxRow.key == request_key(request_id)))
        assert row is not None
        assert (row.status, row.purpose, row.sender) == ("confirmed", "fulfil", direct.transmitter.address)
        assert row.gas_used is not None
        assert row.gas_used < row.gas_limit

    assert answer(direct.consumer, "dry", PERIOD) == expected
    assert bytes(direct.consumer.functions.lastRequestId().call()) == request_id
    assert responses(direct, request_id) == 1
    # The payment stays with the Operator for its owner to withdraw: the request was consumed.
    assert direct.link.functions.balanceOf(direct.operator.address).call() == operator_link_before

    # A replayed log (cursor lost, the same log read again, or a re-org re-delivering it) is not re-fulfilled.
    with world_ctx.sessions() as s:
        s.execute(delete(ChainCursor).where(ChainCursor.name == "chainlink"))
        s.commit()
    again = f.poll()
    assert [h.outcome for h in again.handled] == ["duplicate"]
    raw = direct.w3.eth.get_logs(
        {"fromBlock": direct.deployment.block, "address": direct.operator.address}  # type: ignore[typeddict-item]
    )
    request_logs = [r for r in raw if f.handle_log(r, now=0) is not None]
    assert [f.handle_log(r, now=0).outcome for r in request_logs] == ["duplicate"]  # type: ignore[union-attr]
    assert OutboxPoster(world_ctx.sessions, direct.w3, direct.transmitter).run_until_settled().open == 0
    with world_ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxRow)) == 1
    assert responses(direct, request_id) == 1


def test_unanswerable_requests_are_recorded_and_never_fulfilled(
    world_ctx: Context, direct: DirectKit
) -> None:
    c = direct.consumer.functions
    unknown_job = Web3.keccak(text="somebody-else's-job")
    ignored, _ = ask(direct, c.requestWith(unknown_job, "dry", PERIOD, FEE))
    cheap, _ = ask(direct, c.requestWith(direct.drought_job, "dry", PERIOD, FEE - 1))
    nowhere, _ = ask(direct, c.requestDroughtSeverity("atlantis", PERIOD))
    too_early, _ = ask(direct, c.requestDroughtSeverity("dry", "2026-07"))
    bad_period, _ = ask(direct, c.requestDroughtSeverity("dry", "June"))

    polled = follower(world_ctx, direct).poll()
    outcomes = {h.request_id: (h.outcome, h.reason) for h in polled.handled}
    assert outcomes == {
        ignored: ("ignored", "unknown_job"),
        cheap: ("rejected", "payment_below_minimum"),
        nowhere: ("rejected", "unknown_region"),
        too_early: ("rejected", "incomplete"),
        bad_period: ("rejected", "bad_period"),
    }
    with world_ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxRow)) == 0
        rejects = {
            r.meta["requestId"]: r for r in s.scalars(select(Reject).where(Reject.source == "chainlink"))
        }
    assert set(rejects) == {"0x" + r.hex() for r in (cheap, nowhere, too_early, bad_period)}
    assert "below this job's minimum" in rejects["0x" + cheap.hex()].message
    assert "atlantis" in rejects["0x" + nowhere.hex()].message
    assert "ndvi for 2026-07" in rejects["0x" + too_early.hex()].message
    assert rejects["0x" + nowhere.hex()].meta["task"] == "drought-severity"

    # Refused once means refused for good: polling the same range again records nothing new.
    with world_ctx.sessions() as s:
        s.execute(delete(ChainCursor).where(ChainCursor.name == "chainlink"))
        s.commit()
    again = follower(world_ctx, direct).poll()
    assert sorted(h.outcome for h in again.handled) == ["duplicate"] * 4 + ["ignored"]
    with world_ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Reject).where(Reject.source == "chainlink")) == 4
    for rid in (ignored, cheap, nowhere, too_early, bad_period):
        assert responses(direct, rid) == 0
    with pytest.raises(RevertError, match="NoAnswer"):
        answer(direct.consumer, "atlantis", PERIOD)


def test_expired_and_cancelled_requests(world_ctx: Context, direct: DirectKit) -> None:
    c = direct.consumer.functions
    f = follower(world_ctx, direct)
    # A request the oracle queued but had not signed yet when its requester cancelled it.
    queued, event = ask(direct, c.requestDroughtSeverity("dry", PERIOD))
    assert [h.outcome for h in f.poll().handled] == ["queued"]
    direct.w3.provider.make_request("evm_increaseTime", [301])  # type: ignore[arg-type]
    direct.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    transact(direct.w3, c.cancelRequest(queued, FEE, event["cancelExpiration"]), sender=direct.deployer)
    # A request seen only once too little time is left to fulfil it.
    late, _ = ask(direct, c.requestDroughtSeverity("dry", PERIOD))
    direct.w3.provider.make_request("evm_increaseTime", [280])  # type: ignore[arg-type]
    direct.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    outcomes = {h.request_id: (h.outcome, h.reason) for h in f.poll().handled}
    assert outcomes == {queued: ("cancelled", ""), late: ("rejected", "expired")}
    assert OutboxPoster(world_ctx.sessions, direct.w3, direct.transmitter).run_until_settled().open == 0
    with world_ctx.sessions() as s:
        row = s.scalar(select(OutboxRow).where(OutboxRow.key == request_key(queued)))
        assert row is not None
        assert row.status == "cancelled"
        assert row.tx_hash is None
        reasons = sorted(r.reason for r in s.scalars(select(Reject).where(Reject.source == "chainlink")))
    assert reasons == ["cancelled", "expired"]
    assert responses(direct, queued) == 0
    assert responses(direct, late) == 0
