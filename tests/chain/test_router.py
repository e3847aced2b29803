"""OracleRouter on a real anvil: EIP-712 verification, k-of-n, epochs, signer set and subscribers."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from oracle.chain.client import transact
from oracle.chain.deploy import deploy_router
from oracle.errors import RevertError
from oracle.reports import REPORT_TYPE, VALUE_RANGE, Report, ReportKind, Verdict, report_digest, subject_id
from tests.fixtures.chain import TEST_MODEL_ID, Accounts, ChainKit, make_report, sign_report

pytestmark = pytest.mark.chain

REGION = subject_id("region", "test-router")


def drought(epoch: int, value: int = 2_500_000) -> Report:
    return make_report(REGION, kind=ReportKind.DROUGHT_SEVERITY, value=value, epoch=epoch)


def test_typehash_and_digest_match_python(chain: ChainKit) -> None:
    assert chain.router.functions.REPORT_TYPEHASH().call() == keccak(REPORT_TYPE.encode())
    report = make_report(REGION, kind=ReportKind.DROUGHT_SEVERITY, value=1_234_567, epoch=7)
    on_chain = chain.router.functions.reportDigest(report.as_tuple()).call()
    assert on_chain == report_digest(report, chain_id=chain.deployment.chain_id, router=chain.router.address)


def test_accepted_report_is_stored_and_announced(chain: ChainKit) -> None:
    report = make_report(
        REGION, kind=ReportKind.DROUGHT_SEVERITY, value=3_000_000, epoch=5, observed_at=1_699_999
    )
    receipt = chain.submit(report)
    digest = report_digest(report, chain_id=chain.deployment.chain_id, router=chain.router.address)
    assert chain.router.functions.latest(REGION).call() == [5, 1_699_999, 3_000_000, 1, digest]
    (event,) = chain.events(chain.router, "ReportAccepted", receipt)
    assert event == {
        "subject": REGION,
        "kind": 1,
        "value": 3_000_000,
        "epoch": 5,
        "observedAt": 1_699_999,
        "inputsRoot": report.inputs_root,
        "modelId": report.model_id,
        "reportHash": digest,
    }


def test_more_signatures_than_threshold_are_all_checked(chain: ChainKit) -> None:
    chain.submit(drought(1), chain.sign(drought(1), chain.keys))
    assert chain.router.functions.latest(REGION).call()[0] == 1
    outsider = Account.from_key(keccak(b"not-a-signer"))
    with pytest.raises(RevertError) as e:
        chain.submit(drought(2), chain.sign(drought(2), [*chain.keys, outsider]))
    assert e.value.reason == "UnknownSigner"


@pytest.mark.parametrize("epoch", [3, 2])
def test_stale_or_replayed_epoch_is_rejected(chain: ChainKit, epoch: int) -> None:
    chain.submit(drought(3))
    with pytest.raises(RevertError) as e:
        chain.submit(drought(epoch))
    assert e.value.reason == "StaleEpoch"
    assert chain.router.functions.latest(REGION).call()[0] == 3


def test_unknown_signer_is_rejected(chain: ChainKit) -> None:
    outsiders = sorted(
        (Account.from_key(keccak(f"outsider-{i}".encode())) for i in range(2)),
        key=lambda k: int(k.address, 16),
    )
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), chain.sign(drought(1), outsiders))
    assert e.value.reason == "UnknownSigner"


def test_too_few_signatures_are_rejected(chain: ChainKit) -> None:
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), chain.sign(drought(1), chain.keys[:1]))
    assert e.value.reason == "TooFewSignatures"
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), b"")
    assert e.value.reason == "TooFewSignatures"


def test_duplicate_signature_is_rejected(chain: ChainKit) -> None:
    one = chain.sign(drought(1), chain.keys[:1])
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), one + one)
    assert e.value.reason == "SignersNotAscending"


def test_descending_signers_are_rejected(chain: ChainKit) -> None:
    ascending = chain.sign(drought(1), chain.keys[:2])
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), ascending[64:] + ascending[:64])
    assert e.value.reason == "SignersNotAscending"


def test_malformed_signature_bytes_are_rejected(chain: ChainKit) -> None:
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), chain.sign(drought(1))[:-1])
    assert e.value.reason == "MalformedSignatures"


def test_wrong_chain_id_is_rejected(chain: ChainKit) -> None:
    sigs = chain.sign(drought(1), chain_id=chain.deployment.chain_id + 1)
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), sigs)
    assert e.value.reason in {"UnknownSigner", "SignersNotAscending"}
    assert chain.router.functions.latest(REGION).call()[0] == 0


def test_wrong_verifying_contract_is_rejected(chain: ChainKit) -> None:
    sigs = chain.sign(drought(1), router=chain.pool.address)
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), sigs)
    assert e.value.reason in {"UnknownSigner", "SignersNotAscending"}


def test_tampered_report_is_rejected(chain: ChainKit) -> None:
    sigs = chain.sign(drought(1, value=1_000_000))
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1, value=5_000_000), sigs)
    assert e.value.reason in {"UnknownSigner", "SignersNotAscending"}


def test_unknown_kind_and_out_of_range_value_are_rejected(chain: ChainKit) -> None:
    report = drought(1)
    raw = list(report.as_tuple())
    raw[1] = 9
    with pytest.raises(RevertError) as e:
        chain.send(chain.router.functions.submit(tuple(raw), chain.sign(report)), chain.accounts.relayer)
    assert e.value.reason == "UnknownKind"
    too_big = make_report(REGION, kind=ReportKind.COLDCHAIN_VERDICT, value=3, epoch=1)
    with pytest.raises(RevertError) as e:
        chain.submit(too_big)
    assert e.value.reason == "ValueOutOfRange"


def test_signer_set_changes_are_owner_only_and_evented(w3: Web3, accounts: Accounts) -> None:
    # An unarmed router (delay 0, as before deployment arms it): scheduled changes apply at once.
    owner, stranger = accounts.deployer, accounts.stranger
    keys = sorted((Account.from_key(keccak(f"signer-{i}".encode())) for i in range(3)), key=_by_address)
    router = deploy_router(w3, deployer=owner, signers=[k.address for k in keys], threshold=2)
    newcomer = Account.from_key(keccak(b"newcomer")).address
    for call in (router.functions.scheduleAddSigner(newcomer), router.functions.scheduleThreshold(4)):
        with pytest.raises(RevertError, match="Ownable: caller is not the owner"):
            transact(w3, call, sender=stranger)
    receipt = transact(w3, router.functions.scheduleAddSigner(newcomer), sender=owner)
    assert _events(router, "SignerAdded", receipt) == [{"signer": newcomer}]
    receipt = transact(w3, router.functions.scheduleThreshold(4), sender=owner)
    assert _events(router, "ThresholdChanged", receipt) == [{"previous": 2, "current": 4}]
    with pytest.raises(RevertError) as e:
        transact(w3, router.functions.removeSigner(newcomer), sender=owner)
    assert e.value.reason == "InvalidThreshold"
    transact(w3, router.functions.scheduleThreshold(3), sender=owner)
    with pytest.raises(RevertError, match="Ownable: caller is not the owner"):
        transact(w3, router.functions.removeSigner(newcomer), sender=stranger)
    receipt = transact(w3, router.functions.removeSigner(newcomer), sender=owner)
    assert _events(router, "SignerRemoved", receipt) == [{"signer": newcomer}]
    assert sorted(router.functions.signers().call()) == sorted(k.address for k in keys)
    for threshold in (0, 4):  # 0 at once; 4 when it would apply to 3 signers
        with pytest.raises(RevertError) as e:
            transact(w3, router.functions.scheduleThreshold(threshold), sender=owner)
        assert e.value.reason == "InvalidThreshold"
    assert router.functions.pendingGovernance().call() == []
    # A 3-of-3 router now refuses the 2 signatures it accepted before.
    transact(w3, router.functions.scheduleModel(1, TEST_MODEL_ID, bytes(32)), sender=owner)
    chain_id = w3.eth.chain_id
    sigs = sign_report(drought(1), keys[:2], chain_id=chain_id, router=router.address)
    with pytest.raises(RevertError) as e:
        transact(w3, router.functions.submit(drought(1).as_tuple(), sigs), sender=accounts.relayer)
    assert e.value.reason == "TooFewSignatures"
    sigs = sign_report(drought(1), keys, chain_id=chain_id, router=router.address)
    transact(w3, router.functions.submit(drought(1).as_tuple(), sigs), sender=accounts.relayer)
    assert router.functions.latest(REGION).call()[0] == 1


def _by_address(key: LocalAccount) -> int:
    return int(key.address, 16)


def _events(contract: Contract, event: str, receipt: TxReceipt) -> list[dict[str, Any]]:
    return [dict(log["args"]) for log in contract.events[event]().process_receipt(receipt, errors=DISCARD)]


def test_high_s_and_unrecoverable_signatures_are_rejected(chain: ChainKit) -> None:
    """The signature loop reads r and s itself: a high s (the malleable half; eth-account never makes one)
    and a signature that recovers no address are InvalidSignature, with the index of the bad one."""
    sigs = chain.sign(drought(1))
    half_order = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
    r, parity = sigs[64:96], sigs[96] >> 7
    for s in (half_order + 1, 0):
        bad = r + (parity << 255 | s).to_bytes(32, "big")
        with pytest.raises(RevertError) as e:
            chain.submit(drought(1), sigs[:64] + bad)
        assert str(e.value).endswith("InvalidSignature(1,)")
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), bytes(64) + sigs[64:])
    assert str(e.value).endswith("InvalidSignature(0,)")
    chain.submit(drought(1), sigs)


def test_failing_subscribers_do_not_block_others(chain: ChainKit) -> None:
    router = chain.router.address
    reverting, hog, recorder = (
        chain.deploy(name, router)
        for name in ("RevertingSubscriber", "GasHogSubscriber", "RecordingSubscriber")
    )
    feed = chain.deploy("DroughtIndexFeed", router, REGION, "test region")
    chain.approve_consumers(reverting.address, hog.address, recorder.address, feed.address)
    for consumer in (reverting, hog, recorder):
        chain.send(consumer.functions.join(REGION))
    chain.send(feed.functions.subscribe())
    assert chain.router.functions.subscribers(REGION).call() == [
        reverting.address,
        hog.address,
        recorder.address,
        feed.address,
    ]
    receipt = chain.submit(drought(1, value=2_000_000))
    failed = chain.events(chain.router, "SubscriberFailed", receipt)
    assert [f["consumer"] for f in failed] == [reverting.address, hog.address]
    assert b"RevertingSubscriber: refused" in failed[0]["reason"]
    assert failed[1]["reason"] == b""  # out of gas leaves no reason
    assert recorder.functions.calls().call() == 1
    assert recorder.functions.lastValue().call() == 2_000_000
    assert feed.functions.latestRoundData().call()[1] == 2_000_000
    assert chain.router.functions.latest(REGION).call()[0] == 1


def test_relay_with_too_little_gas_for_subscribers_reverts(chain: ChainKit) -> None:
    chain.subscriber("RecordingSubscriber", REGION)
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1), gas=400_000)
    assert e.value.reason == "InsufficientGasForSubscribers"
    assert chain.router.functions.latest(REGION).call()[0] == 0


def test_subscriptions_are_capped_and_can_be_cancelled(chain: ChainKit) -> None:
    cap = chain.router.functions.MAX_SUBSCRIBERS().call()
    subject = subject_id("shipment", "cap")
    recorders = chain.subscribers("RecordingSubscriber", subject, cap)
    latecomer = chain.deploy("RecordingSubscriber", chain.router.address)
    chain.approve_consumers(latecomer.address)
    with pytest.raises(RevertError) as e:
        chain.send(latecomer.functions.join(subject))
    assert e.value.reason == "TooManySubscribers"
    assert len(chain.router.functions.subscribers(subject).call()) == cap
    receipt = chain.send(recorders[0].functions.leave(subject))
    assert chain.events(chain.router, "Unsubscribed", receipt) == [
        {"subject": subject, "consumer": recorders[0].address}
    ]
    with pytest.raises(RevertError) as e:
        chain.send(recorders[0].functions.leave(subject))
    assert e.value.reason == "NotSubscribed"
    chain.send(latecomer.functions.join(subject))
    expected = [r.address for r in recorders[1:]] + [latecomer.address]
    assert sorted(chain.router.functions.subscribers(subject).call()) == sorted(expected)
    chain.submit(make_report(subject, kind=ReportKind.COLDCHAIN_VERDICT, value=0, epoch=1))
    assert recorders[0].functions.calls().call() == 0
    assert [r.functions.calls().call() for r in (*recorders[1:], latecomer)] == [1] * cap


def test_consumers_refuse_calls_not_from_the_router(chain: ChainKit) -> None:
    report = make_report(REGION, kind=ReportKind.COLDCHAIN_VERDICT, value=int(Verdict.BREACH), epoch=1)
    for consumer in (chain.pool, chain.escrow):
        with pytest.raises(RevertError) as e:
            transact(chain.w3, consumer.functions.onReport(report.as_tuple()), sender=chain.accounts.stranger)
        assert e.value.reason == "NotRouter"


def test_only_approved_consumers_may_subscribe_and_the_owner_can_remove_them(chain: ChainKit) -> None:
    router, owner, stranger = chain.router, chain.accounts.deployer, chain.accounts.stranger
    squatter = chain.deploy("RecordingSubscriber", router.address)
    with pytest.raises(RevertError) as e:
        chain.send(squatter.functions.join(REGION), stranger)
    assert e.value.reason == "ConsumerNotApproved"
    for call in (
        router.functions.scheduleConsumerApproval(squatter.address),
        router.functions.revokeConsumerApproval(chain.pool.address),
    ):
        with pytest.raises(RevertError, match="Ownable"):
            chain.send(call, stranger)
    chain.approve_consumers(squatter.address)
    assert router.functions.approvedConsumer(squatter.address).call()
    chain.send(squatter.functions.join(REGION), stranger)
    with pytest.raises(RevertError) as e:
        chain.send(squatter.functions.join(REGION), stranger)
    assert e.value.reason == "AlreadySubscribed"
    with pytest.raises(RevertError, match="Ownable"):
        chain.send(router.functions.removeSubscriber(REGION, squatter.address), stranger)
    receipt = chain.send(router.functions.removeSubscriber(REGION, squatter.address), owner)
    assert chain.events(router, "Unsubscribed", receipt) == [
        {"subject": REGION, "consumer": squatter.address}
    ]
    chain.submit(drought(1))
    assert squatter.functions.calls().call() == 0


@pytest.mark.parametrize("kind", list(ReportKind))
def test_on_chain_value_range_equals_the_signers_range(chain: ChainKit, kind: ReportKind) -> None:
    lo, hi = VALUE_RANGE[kind]
    subject = subject_id("region", f"range-{kind.name}")
    for epoch, value in enumerate((lo, hi), start=1):
        chain.submit(make_report(subject, kind=kind, value=value, epoch=epoch))
        assert chain.router.functions.latest(subject).call()[2] == value
    for value in (lo - 1, hi + 1):
        report = make_report(subject, kind=kind, value=value, epoch=9)
        with pytest.raises(RevertError) as e:
            chain.submit(report)
        assert e.value.reason == "ValueOutOfRange"
