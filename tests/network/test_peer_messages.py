"""What a node takes from a peer: only a canonical signature by that member's signer, on a report with
an honest epoch; everything else is refused with a recorded reason (in-process, real SQLite)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import select

from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.errors import ValidationError
from oracle.network.membership import Member, Network, NodeIdentity
from oracle.network.rounds import NodeRuntime, accept_peer_signature, report_json
from oracle.reports import Report, ReportKind, subject_id, typed_data
from oracle.signer.client import LocalSigner
from oracle.storage.network_tables import PeerSignature
from oracle.storage.tables import Reject

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ROUTER = "0x" + "33" * 20


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    c = open_context(Settings(env="dev", data_dir=tmp_path / "node", _env_file=None))  # type: ignore[call-arg]
    yield c
    c.close()


def _setup() -> tuple[NodeRuntime, Member, object]:
    me = NodeIdentity("node1", Account.create())
    peer_signer = Account.create()
    members = (
        Member("node1", Account.create().address, me.address, "http://127.0.0.1:9301"),
        Member("node2", peer_signer.address, Account.create().address, "http://127.0.0.1:9302"),
        Member("node3", Account.create().address, Account.create().address, "http://127.0.0.1:9303"),
    )
    runtime = NodeRuntime(
        network=Network(name="t", threshold=2, members=members),
        identity=me,
        signer=LocalSigner(Account.create().key),
        chain_id=31337,
        router=ROUTER,
    )
    return runtime, members[1], peer_signer


def _report(epoch: int) -> Report:
    return Report(
        subject=subject_id("region", "r"),
        kind=ReportKind.DROUGHT_SEVERITY,
        value=1_500_000,
        epoch=epoch,
        observed_at=1_780_000_000,
        inputs_root=b"\x01" * 32,
        model_id=b"\x02" * 32,
    )


def _signed(account: object, report: Report) -> bytes:
    data = typed_data(report, chain_id=31337, router=ROUTER)
    return bytes(account.sign_typed_data(full_message=data).signature)  # type: ignore[attr-defined]


def _message(report: Report, signature: bytes) -> dict[str, object]:
    return {
        "subject": "0x" + report.subject.hex(),
        "epoch": report.epoch,
        "report": report_json(report),
        "signature": "0x" + signature.hex(),
    }


def test_only_a_canonical_signature_with_an_honest_epoch_is_stored(ctx: Context) -> None:
    runtime, sender, account = _setup()
    report = _report((2026 * 12 + 5) * 1000)
    good = _signed(account, report)
    # The malleable twin recovers to the same signer but the router would refuse it: refused here.
    s = int.from_bytes(good[32:64], "big")
    twin = good[:32] + (N - s).to_bytes(32, "big") + bytes([55 - good[64]])
    with pytest.raises(ValidationError) as e:
        accept_peer_signature(ctx, runtime, sender, _message(report, twin))
    assert e.value.reason == "bad_signature"
    ahead = _report(2**63)
    with pytest.raises(ValidationError) as e:
        accept_peer_signature(ctx, runtime, sender, _message(ahead, _signed(account, ahead)))
    assert e.value.reason == "epoch_too_far_ahead"
    other = Account.create()
    with pytest.raises(ValidationError) as e:
        accept_peer_signature(ctx, runtime, sender, _message(report, _signed(other, report)))
    assert e.value.reason == "wrong_signer"
    assert accept_peer_signature(ctx, runtime, sender, _message(report, good)) == {
        "stored": True,
        "agrees": None,
    }
    different = dataclasses.replace(report, value=1)
    with pytest.raises(ValidationError) as e:
        accept_peer_signature(ctx, runtime, sender, _message(different, _signed(account, different)))
    assert e.value.reason == "equivocation"
    with ctx.sessions() as session:
        assert len(session.scalars(select(PeerSignature)).all()) == 1
        reasons = sorted(r.reason for r in session.scalars(select(Reject).where(Reject.source == "peer")))
    assert reasons == ["bad_signature", "epoch_too_far_ahead", "equivocation", "wrong_signer"]
