"""The router's model allowlist and its timelock on a real anvil: unapproved models are refused, a model
swap is usable only after the delay, revocation is immediate, a shorter delay waits out the current one,
and the hot path still meets the gas goals."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from oracle.chain.deploy import DEFAULT_MODEL_DELAY, deploy_router
from oracle.errors import RevertError
from oracle.reports import Report, ReportKind, subject_id
from tests.fixtures.chain import TEST_MODEL_ID, ChainKit, make_report, sign_report

pytestmark = pytest.mark.chain

DROUGHT = int(ReportKind.DROUGHT_SEVERITY)
REGION = subject_id("region", "test-governance")
NEW_MODEL = keccak(b"drought-model-v2")
ZERO = bytes(32)

#: bench/gas.py goals: whole-transaction gas of a steady-state submit without subscribers.
GAS_GOAL_1_OF_1 = 55_000
GAS_GOAL_5_OF_5 = 81_025


def with_model(report: Report, model_id: bytes) -> Report:
    return dataclasses.replace(report, model_id=model_id)


def drought(epoch: int, model_id: bytes = TEST_MODEL_ID) -> Report:
    report = make_report(REGION, kind=ReportKind.DROUGHT_SEVERITY, value=1_500_000, epoch=epoch)
    return with_model(report, model_id)


def test_deployment_arms_the_timelock_with_the_initial_models_active(chain: ChainKit) -> None:
    router = chain.router
    assert router.functions.modelDelay().call() == DEFAULT_MODEL_DELAY
    assert router.functions.isModelApproved(DROUGHT, TEST_MODEL_ID).call()
    assert router.functions.modelActiveSince(DROUGHT, TEST_MODEL_ID).call() > 0
    assert not router.functions.isModelApproved(DROUGHT, NEW_MODEL).call()


def test_report_from_an_unapproved_model_is_rejected(chain: ChainKit) -> None:
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1, NEW_MODEL))
    assert e.value.reason == "ModelNotApproved"
    # Approval is per kind: the same model id approved for drought says nothing about cold chain.
    verdict = make_report(
        subject_id("shipment", "gov-1"), kind=ReportKind.COLDCHAIN_VERDICT, value=1, epoch=1
    )
    chain.send(chain.router.functions.revokeModel(int(ReportKind.COLDCHAIN_VERDICT), TEST_MODEL_ID))
    with pytest.raises(RevertError) as e:
        chain.submit(verdict)
    assert e.value.reason == "ModelNotApproved"
    chain.submit(drought(1))  # the drought approval is untouched
    assert chain.router.functions.latest(REGION).call()[0] == 1


def test_model_swap_takes_effect_only_after_the_timelock(chain: ChainKit) -> None:
    router = chain.router
    receipt = chain.send(router.functions.scheduleModel(DROUGHT, NEW_MODEL, TEST_MODEL_ID))
    (scheduled,) = chain.events(router, "ModelScheduled", receipt)
    activates_at = chain.now() + DEFAULT_MODEL_DELAY
    assert scheduled == {
        "kind": DROUGHT,
        "modelId": NEW_MODEL,
        "replaces": TEST_MODEL_ID,
        "activatesAt": activates_at,
    }
    assert router.functions.pendingModel(DROUGHT, NEW_MODEL).call() == [activates_at, TEST_MODEL_ID]

    with pytest.raises(RevertError) as e:
        chain.submit(drought(1, NEW_MODEL))
    assert e.value.reason == "ModelNotApproved"
    with pytest.raises(RevertError) as e:
        chain.send(router.functions.activateModel(DROUGHT, NEW_MODEL), chain.accounts.stranger)
    assert e.value.reason == "TimelockNotExpired"
    chain.submit(drought(1))  # the old model keeps working until the swap

    chain.advance_time(DEFAULT_MODEL_DELAY - 60)
    with pytest.raises(RevertError) as e:
        chain.send(router.functions.activateModel(DROUGHT, NEW_MODEL), chain.accounts.stranger)
    assert e.value.reason == "TimelockNotExpired"

    chain.advance_time(120)
    # Anyone may activate once the delay is over: the owner cannot quietly hold a model back.
    receipt = chain.send(router.functions.activateModel(DROUGHT, NEW_MODEL), chain.accounts.stranger)
    assert chain.events(router, "ModelActivated", receipt) == [
        {"kind": DROUGHT, "modelId": NEW_MODEL, "replaced": TEST_MODEL_ID}
    ]
    assert chain.events(router, "ModelRevoked", receipt) == [{"kind": DROUGHT, "modelId": TEST_MODEL_ID}]
    chain.submit(drought(2, NEW_MODEL))
    assert chain.router.functions.latest(REGION).call()[0] == 2
    with pytest.raises(RevertError) as e:
        chain.submit(drought(3))  # the replaced model is gone
    assert e.value.reason == "ModelNotApproved"
    with pytest.raises(RevertError) as e:
        chain.send(router.functions.activateModel(DROUGHT, NEW_MODEL))
    assert e.value.reason == "ModelNotScheduled"


def test_revocation_is_immediate_and_scheduling_is_owner_only(chain: ChainKit) -> None:
    router = chain.router
    stranger = chain.accounts.stranger
    for call in (
        router.functions.scheduleModel(DROUGHT, NEW_MODEL, ZERO),
        router.functions.revokeModel(DROUGHT, TEST_MODEL_ID),
        router.functions.setModelDelay(0),
        router.functions.cancelModel(DROUGHT, NEW_MODEL),
    ):
        with pytest.raises(RevertError, match="Ownable: caller is not the owner"):
            chain.send(call, stranger)

    receipt = chain.send(router.functions.revokeModel(DROUGHT, TEST_MODEL_ID))
    assert chain.events(router, "ModelRevoked", receipt) == [{"kind": DROUGHT, "modelId": TEST_MODEL_ID}]
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1))
    assert e.value.reason == "ModelNotApproved"

    chain.send(router.functions.scheduleModel(DROUGHT, NEW_MODEL, ZERO))
    receipt = chain.send(router.functions.cancelModel(DROUGHT, NEW_MODEL))
    assert chain.events(router, "ModelCancelled", receipt) == [{"kind": DROUGHT, "modelId": NEW_MODEL}]
    assert router.functions.pendingModel(DROUGHT, NEW_MODEL).call() == [0, ZERO]


@pytest.mark.parametrize(
    ("kind", "model_id", "replaces", "reason"),
    [
        (9, NEW_MODEL, ZERO, "UnknownKind"),
        (DROUGHT, ZERO, ZERO, "InvalidModelId"),
        (DROUGHT, TEST_MODEL_ID, ZERO, "ModelAlreadyApproved"),
        (DROUGHT, NEW_MODEL, keccak(b"never-approved"), "ModelNotApproved"),
    ],
)
def test_bad_schedules_are_refused(
    chain: ChainKit, kind: int, model_id: bytes, replaces: bytes, reason: str
) -> None:
    with pytest.raises(RevertError) as e:
        chain.send(chain.router.functions.scheduleModel(kind, model_id, replaces))
    assert e.value.reason == reason


def test_a_shorter_delay_waits_out_the_current_one(chain: ChainKit) -> None:
    router = chain.router
    with pytest.raises(RevertError) as e:
        chain.send(router.functions.setModelDelay(31 * 86_400))
    assert e.value.reason == "ModelDelayTooLong"

    receipt = chain.send(router.functions.setModelDelay(0))
    effective_at = chain.now() + DEFAULT_MODEL_DELAY
    assert chain.events(router, "ModelDelayScheduled", receipt) == [{"delay": 0, "effectiveAt": effective_at}]
    assert router.functions.modelDelay().call() == DEFAULT_MODEL_DELAY
    assert router.functions.pendingModelDelay().call() == [0, effective_at]
    with pytest.raises(RevertError) as e:
        chain.send(router.functions.applyModelDelay(), chain.accounts.stranger)
    assert e.value.reason == "TimelockNotExpired"
    # Scheduling during the wait still uses the old, longer delay.
    receipt = chain.send(router.functions.scheduleModel(DROUGHT, NEW_MODEL, ZERO))
    (scheduled,) = chain.events(router, "ModelScheduled", receipt)
    assert scheduled["activatesAt"] == chain.now() + DEFAULT_MODEL_DELAY

    chain.advance_time(DEFAULT_MODEL_DELAY + 1)
    receipt = chain.send(router.functions.applyModelDelay(), chain.accounts.stranger)
    assert chain.events(router, "ModelDelayChanged", receipt) == [
        {"previous": DEFAULT_MODEL_DELAY, "current": 0}
    ]
    # A longer delay applies at once.
    receipt = chain.send(router.functions.setModelDelay(3600))
    assert chain.events(router, "ModelDelayChanged", receipt) == [{"previous": 0, "current": 3600}]
    with pytest.raises(RevertError) as e:
        chain.send(router.functions.applyModelDelay())
    assert e.value.reason == "NoPendingDelay"


def test_unarmed_router_activates_at_once_with_both_events(chain: ChainKit) -> None:
    router = deploy_router(
        chain.w3, deployer=chain.accounts.deployer, signers=[chain.keys[0].address], threshold=1
    )
    assert router.functions.modelDelay().call() == 0
    receipt = chain.send(router.functions.scheduleModel(DROUGHT, NEW_MODEL, ZERO))
    (scheduled,) = chain.events(router, "ModelScheduled", receipt)
    assert scheduled["activatesAt"] == chain.now()
    assert chain.events(router, "ModelActivated", receipt) == [
        {"kind": DROUGHT, "modelId": NEW_MODEL, "replaced": ZERO}
    ]
    assert router.functions.isModelApproved(DROUGHT, NEW_MODEL).call()


@pytest.mark.parametrize(("signers", "goal"), [(1, GAS_GOAL_1_OF_1), (5, GAS_GOAL_5_OF_5)])
def test_allowlist_keeps_the_gas_goals(chain: ChainKit, signers: int, goal: int) -> None:
    keys = sorted(
        (Account.from_key(keccak(f"gov-gas-{i}".encode())) for i in range(signers)),
        key=lambda k: int(k.address, 16),
    )
    router = deploy_router(
        chain.w3, deployer=chain.accounts.deployer, signers=[k.address for k in keys], threshold=signers
    )
    chain.send(router.functions.scheduleModel(DROUGHT, NEW_MODEL, ZERO))
    gas = []
    for epoch in (1, 2):  # the second report is the steady state bench/gas.py measures
        report = drought(epoch, NEW_MODEL)
        sigs = sign_report(report, keys, chain_id=chain.deployment.chain_id, router=router.address)
        receipt = chain.send(router.functions.submit(report.as_tuple(), sigs), chain.accounts.relayer)
        gas.append(int(receipt["gasUsed"]))
    assert gas[1] <= goal
