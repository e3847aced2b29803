"""OracleRouter on a real anvil: EIP-712 verification, k-of-n, epochs, signer set and subscribers."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from oracle.chain.client import transact
from oracle.errors import RevertError
from oracle.reports import REPORT_TYPE, VALUE_RANGE, Report, ReportKind, Verdict, report_digest, subject_id
from tests.fixtures.chain import ChainKit, make_report

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


def test_signer_set_changes_are_owner_only_and_evented(chain: ChainKit) -> None:
    router, owner, stranger = chain.router, chain.accounts.deployer, chain.accounts.stranger
    newcomer = Account.from_key(keccak(b"newcomer")).address
    with pytest.raises(RevertError, match="Ownable: caller is not the owner"):
        chain.send(router.functions.addSigner(newcomer), stranger)
    receipt = chain.send(router.functions.addSigner(newcomer), owner)
    assert chain.events(router, "SignerAdded", receipt) == [{"signer": newcomer}]
    receipt = chain.send(router.functions.setThreshold(4), owner)
    assert chain.events(router, "ThresholdChanged", receipt) == [{"previous": 2, "current": 4}]
    with pytest.raises(RevertError) as e:
        chain.send(router.functions.removeSigner(newcomer), owner)
    assert e.value.reason == "InvalidThreshold"
    chain.send(router.functions.setThreshold(3), owner)
    receipt = chain.send(router.functions.removeSigner(newcomer), owner)
    assert chain.events(router, "SignerRemoved", receipt) == [{"signer": newcomer}]
    assert sorted(router.functions.signers().call()) == sorted(k.address for k in chain.keys)
    with pytest.raises(RevertError) as e:
        chain.send(router.functions.setThreshold(0), owner)
    assert e.value.reason == "InvalidThreshold"
    # A 3-of-3 router now refuses the 2 signatures it accepted before.
    with pytest.raises(RevertError) as e:
        chain.submit(drought(1))
    assert e.value.reason == "TooFewSignatures"
    chain.submit(drought(1), chain.sign(drought(1), chain.keys))


def test_failing_subscribers_do_not_block_others(chain: ChainKit) -> None:
    router = chain.router.address
    reverting = chain.subscriber("RevertingSubscriber", REGION)
    hog = chain.subscriber("GasHogSubscriber", REGION)
    recorder = chain.subscriber("RecordingSubscriber", REGION)
    feed = chain.deploy("DroughtIndexFeed", router, REGION, "test region")
    chain.send(chain.router.functions.setConsumerApproval(feed.address, True))
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
    recorders = [chain.subscriber("RecordingSubscriber", subject) for _ in range(cap)]
    with pytest.raises(RevertError) as e:
        chain.subscriber("RecordingSubscriber", subject)
    assert e.value.reason == "TooManySubscribers"
    assert len(chain.router.functions.subscribers(subject).call()) == cap
    receipt = chain.send(recorders[0].functions.leave(subject))
    assert chain.events(chain.router, "Unsubscribed", receipt) == [
        {"subject": subject, "consumer": recorders[0].address}
    ]
    with pytest.raises(RevertError) as e:
        chain.send(recorders[0].functions.leave(subject))
    assert e.value.reason == "NotSubscribed"
    latecomer = chain.subscriber("RecordingSubscriber", subject)
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
    with pytest.raises(RevertError, match="Ownable"):
        chain.send(router.functions.setConsumerApproval(squatter.address, True), stranger)
    receipt = chain.send(router.functions.setConsumerApproval(squatter.address, True), owner)
    assert chain.events(router, "ConsumerApproval", receipt) == [
        {"consumer": squatter.address, "approved": True}
    ]
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
