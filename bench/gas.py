"""Gas used by the router and its consumers, measured on a fresh local anvil.

Run alone: ``.venv/bin/python bench/gas.py``. Prints a table, then one JSON line of figures.
"report" figures are whole-transaction gas (21,000 base + calldata + execution) of ``submit`` for a
subject that already has a report and no subscribers, the case Chronicle's published ``poke``
figure (81,025 gas with 5 signers) describes. ``report_3of4_gas`` is the oracle network's case (4 members,
k = 3; goal ≤ 66,000).

Disputes (issue 14), side by side for the pool and the escrow: ``dispute`` (the watcher's call, bond
into the vault; a first bond into an empty vault costs more), ``resolveDispute`` upheld (bond back) and
rejected (the pool pays one policy; the escrow pays the bond to the buyer and voids the shipment), the
report that is only held by a window, and the escrow's ``finalize`` after the window.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.logs import DISCARD

from oracle.chain.anvil import dev_accounts, start_anvil
from oracle.chain.client import connect, encode_signatures, transact
from oracle.chain.deploy import deploy_all, deploy_router
from oracle.chain.escrow import shipment_name_for
from oracle.decisions.coldchain import profile_bytes32
from oracle.reports import Report, ReportKind, Verdict, subject_id, typed_data

CHRONICLE_POKE_5_SIGNERS = 81_025
CHRONICLE_POKE_10_SIGNERS = 106_395
NETWORK_3_OF_4_GOAL = 66_000


BENCH_MODEL = keccak(b"model-v1")


def signer_keys(n: int) -> list[LocalAccount]:
    # Deterministic throwaway keys, only ever used on this bench's private chain.
    return [Account.from_key(keccak(f"bench-signer-{i}".encode())) for i in range(n)]


def sign(report: Report, keys: list[LocalAccount], *, chain_id: int, router: str) -> bytes:
    data = typed_data(report, chain_id=chain_id, router=router)
    return encode_signatures((k.address, bytes(k.sign_typed_data(full_message=data).signature)) for k in keys)


def report(subject: bytes, *, kind: ReportKind, value: int, epoch: int, observed_at: int) -> Report:
    return Report(
        subject=subject,
        kind=kind,
        value=value,
        epoch=epoch,
        observed_at=observed_at,
        inputs_root=keccak(b"inputs-%d" % epoch),
        model_id=BENCH_MODEL,
    )


def submit_gas(
    w3: Web3, router_addr: str, keys: list[LocalAccount], rep: Report, sender: LocalAccount
) -> int:
    from oracle.chain.artifacts import load_artifact

    router = w3.eth.contract(address=router_addr, abi=list(load_artifact("OracleRouter").abi))  # type: ignore[call-overload]
    sigs = sign(rep, keys, chain_id=w3.eth.chain_id, router=router_addr)
    receipt = transact(w3, router.functions.submit(rep.as_tuple(), sigs), sender=sender)
    return int(receipt["gasUsed"])


def steady_state_gas(
    w3: Web3, deployer: LocalAccount, relayer: LocalAccount, n: int, k: int | None = None
) -> int:
    """Gas of a k-of-n report (k = n unless given) for a subject that already has one; the k signers
    with the lowest addresses sign."""
    k = n if k is None else k
    keys = signer_keys(n)
    router = deploy_router(w3, deployer=deployer, signers=[key.address for key in keys], threshold=k)
    keys = sorted(keys, key=lambda key: int(key.address, 16))[:k]
    # The router accepts only allowlisted models; with its timelock not yet armed, scheduling is immediate.
    transact(w3, router.functions.scheduleModel(1, BENCH_MODEL, bytes(32)), sender=deployer)
    subject = subject_id("region", f"bench-{k}of{n}")
    first = report(
        subject, kind=ReportKind.DROUGHT_SEVERITY, value=1_250_000, epoch=1, observed_at=1_700_000_000
    )
    submit_gas(w3, router.address, keys, first, relayer)
    second = report(
        subject, kind=ReportKind.DROUGHT_SEVERITY, value=2_500_000, epoch=2, observed_at=1_702_592_000
    )
    return submit_gas(w3, router.address, keys, second, relayer)


LIVENESS = 3_600
ANSWER = 7_200
BOND = 50 * 10**6


def _advance(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _gas(w3: Web3, call: object, sender: LocalAccount) -> int:
    return int(transact(w3, call, sender=sender)["gasUsed"])  # type: ignore[arg-type]


def pool_dispute_gas(
    w3: Web3,
    dep: object,
    keys: list[LocalAccount],
    *,
    owner: LocalAccount,
    relayer: LocalAccount,
    watcher: LocalAccount,
) -> dict[str, int]:
    """The pool's dispute figures: one policy on a region with a one-hour window."""
    pool = dep.contract(w3, "DroughtInsurancePool")  # type: ignore[attr-defined]
    coin = dep.contract(w3, "TestStablecoin")  # type: ignore[attr-defined]
    router = dep.address("OracleRouter")  # type: ignore[attr-defined]
    region = subject_id("region", "bench-dispute")
    transact(
        w3,
        pool.functions.createPolicy(
            watcher.address, region, 1_690_000_000, 1_710_000_000, 2_000_000, 4_000_000, 1_000 * 10**6
        ),
        sender=owner,
    )
    product = int(pool.functions.productCount().call())
    transact(w3, pool.functions.setLiveness(product, LIVENESS), sender=owner)
    transact(w3, pool.functions.setDisputeTerms(BOND, 20 * 10**6, ANSWER), sender=owner)
    transact(w3, coin.functions.mint(watcher.address, 10 * BOND), sender=owner)
    transact(w3, coin.functions.approve(pool.address, 2**256 - 1), sender=watcher)
    out: dict[str, int] = {}
    month = 2023 * 12 + 10  # November 2023 (observedAt 1_700_000_000); epoch = month × 1000 + revision
    # Two months held: the first dispute bonds into an empty vault, the second into one holding a bond.
    for m in (month, month + 1):
        held = report(
            region,
            kind=ReportKind.DROUGHT_SEVERITY,
            value=3_000_000,
            epoch=m * 1000,
            observed_at=1_700_000_000,
        )
        out.setdefault("pool_report_held_gas", submit_gas(w3, router, keys, held, relayer))
    dispute = pool.functions.dispute
    out["pool_dispute_first_bond_gas"] = _gas(w3, dispute(region, month * 1000, "bafkreibench"), watcher)
    out["pool_dispute_gas"] = _gas(w3, dispute(region, (month + 1) * 1000, "bafkreibench"), watcher)
    fix = report(
        region,
        kind=ReportKind.DROUGHT_SEVERITY,
        value=1_000_000,
        epoch=month * 1000 + 1,
        observed_at=1_700_000_000,
    )
    submit_gas(w3, router, keys, fix, relayer)
    out["pool_resolve_upheld_gas"] = _gas(w3, pool.functions.resolveDispute(region, month * 1000), watcher)
    _advance(w3, ANSWER + 1)
    out["pool_resolve_rejected_gas"] = _gas(
        w3, pool.functions.resolveDispute(region, (month + 1) * 1000), watcher
    )
    return out


def escrow_dispute_gas(
    w3: Web3,
    dep: object,
    keys: list[LocalAccount],
    *,
    owner: LocalAccount,
    relayer: LocalAccount,
    buyer: LocalAccount,
    seller: LocalAccount,
    watcher: LocalAccount,
) -> dict[str, int]:
    """The escrow's figures: shipments with a one-hour window and a bond in the shipment's token."""
    from oracle.chain.escrow import open_escrow

    escrow = dep.contract(w3, "ColdChainEscrow")  # type: ignore[attr-defined]
    coin = dep.contract(w3, "TestStablecoin")  # type: ignore[attr-defined]
    router = dep.address("OracleRouter")  # type: ignore[attr-defined]
    transact(w3, coin.functions.mint(watcher.address, 10 * BOND), sender=owner)
    transact(w3, coin.functions.approve(escrow.address, 2**256 - 1), sender=watcher)
    out: dict[str, int] = {}
    names = [shipment_name_for(buyer.address, f"bench-window-{n}") for n in range(3)]
    shipments = [subject_id("shipment", name) for name in names]
    now = int(w3.eth.get_block("latest")["timestamp"])
    for name, shipment in zip(names, shipments, strict=True):
        open_escrow(
            w3,
            escrow,
            name=name,
            buyer=buyer,
            seller=seller,
            token=coin.address,
            amount=500 * 10**6,
            profile=profile_bytes32("refrigerated"),
            expected_delivery=now + 86_400,
            deadline=now + 7 * 86_400,
            liveness=LIVENESS,
            answer_window=ANSWER,
            dispute_bond=BOND,
        )
        held = report(
            shipment, kind=ReportKind.COLDCHAIN_VERDICT, value=int(Verdict.BREACH), epoch=1, observed_at=now
        )
        out.setdefault("escrow_report_held_gas", submit_gas(w3, router, keys, held, relayer))
    # Shipment 0 upheld, 1 rejected (bond to the buyer, voided), 2 undisputed and finalized.
    dispute = escrow.functions.dispute
    out["escrow_dispute_first_bond_gas"] = _gas(w3, dispute(shipments[0], 1, "bafkreibench"), watcher)
    out["escrow_dispute_gas"] = _gas(w3, dispute(shipments[1], 1, "bafkreibench"), watcher)
    fix = report(
        shipments[0],
        kind=ReportKind.COLDCHAIN_VERDICT,
        value=int(Verdict.DELIVERED),
        epoch=2,
        observed_at=now,
    )
    submit_gas(w3, router, keys, fix, relayer)
    out["escrow_resolve_upheld_gas"] = _gas(w3, escrow.functions.resolveDispute(shipments[0], 1), watcher)
    _advance(w3, ANSWER + 1)
    out["escrow_resolve_rejected_gas"] = _gas(w3, escrow.functions.resolveDispute(shipments[1], 1), watcher)
    out["escrow_finalize_gas"] = _gas(w3, escrow.functions.finalize(shipments[2]), watcher)
    return out


def main() -> None:
    started = time.monotonic()
    owner, relayer, insured, buyer, seller = dev_accounts(5)
    figures: dict[str, int] = {}
    with start_anvil() as anvil:
        w3 = connect(anvil.url)
        for n in (1, 3, 5, 10):
            figures[f"report_{n}of{n}_gas"] = steady_state_gas(w3, owner, relayer, n)
        figures["report_3of4_gas"] = steady_state_gas(w3, owner, relayer, 4, 3)

        keys = signer_keys(1)
        feed_region = subject_id("region", "bench-feed")
        dep = deploy_all(
            w3,
            deployer=owner,
            signers=[keys[0].address],
            threshold=1,
            chainlink=False,
            models=[(1, BENCH_MODEL), (2, BENCH_MODEL)],
            feeds=[(feed_region, "bench feed")],
        )
        router_addr = dep.address("OracleRouter")
        pool = dep.contract(w3, "DroughtInsurancePool")
        region = subject_id("region", "bench-payout")
        receipt = transact(
            w3,
            pool.functions.createPolicy(
                insured.address, region, 1_690_000_000, 1_710_000_000, 2_000_000, 4_000_000, 1_000 * 10**6
            ),
            sender=owner,
        )
        figures["create_policy_gas"] = int(receipt["gasUsed"])
        # One report below the trigger first, so the measured one updates an existing subject.
        below = report(
            region, kind=ReportKind.DROUGHT_SEVERITY, value=1_000_000, epoch=1, observed_at=1_695_000_000
        )
        figures["report_no_payout_1_policy_gas"] = submit_gas(w3, router_addr, keys, below, relayer)
        pay = report(
            region, kind=ReportKind.DROUGHT_SEVERITY, value=3_000_000, epoch=2, observed_at=1_700_000_000
        )
        figures["report_with_payout_gas"] = submit_gas(w3, router_addr, keys, pay, relayer)

        coin = dep.contract(w3, "TestStablecoin")
        escrow = dep.contract(w3, "ColdChainEscrow")
        transact(w3, coin.functions.mint(buyer.address, 10_000 * 10**6), sender=owner)
        transact(w3, coin.functions.approve(escrow.address, 2**256 - 1), sender=buyer)
        # The buyer's name for its shipment: "0x<buyer>:bench-1" (50 characters), which the escrow checks
        # against the caller and hashes into the id.
        name = shipment_name_for(buyer.address, "bench-1")
        shipment = subject_id("shipment", name)
        now = int(w3.eth.get_block("latest")["timestamp"])
        deadline = now + 7 * 86_400
        receipt = transact(
            w3,
            escrow.functions.createShipment(
                name,
                seller.address,
                coin.address,
                500 * 10**6,
                profile_bytes32("refrigerated"),
                now + 86_400,
                deadline,
            ),
            sender=buyer,
        )
        figures["create_shipment_gas"] = int(receipt["gasUsed"])
        (proposed,) = escrow.events.ShipmentProposed().process_receipt(receipt, errors=DISCARD)
        accepted = transact(
            w3,
            escrow.functions.acceptShipment(shipment, buyer.address, proposed["args"]["termsHash"]),
            sender=seller,
        )
        figures["accept_shipment_gas"] = int(accepted["gasUsed"])
        void = report(
            shipment,
            kind=ReportKind.COLDCHAIN_VERDICT,
            value=int(Verdict.BREACH),
            epoch=1,
            observed_at=deadline - 3600,
        )
        figures["report_with_void_gas"] = submit_gas(w3, router_addr, keys, void, relayer)

        first = report(
            feed_region, kind=ReportKind.DROUGHT_SEVERITY, value=1_000_000, epoch=1, observed_at=1_700_000_000
        )
        submit_gas(w3, router_addr, keys, first, relayer)
        second = report(
            feed_region, kind=ReportKind.DROUGHT_SEVERITY, value=1_500_000, epoch=2, observed_at=1_700_086_400
        )
        figures["report_with_feed_update_gas"] = submit_gas(w3, router_addr, keys, second, relayer)

        figures.update(pool_dispute_gas(w3, dep, keys, owner=owner, relayer=relayer, watcher=insured))
        figures.update(
            escrow_dispute_gas(
                w3, dep, keys, owner=owner, relayer=relayer, buyer=buyer, seller=seller, watcher=insured
            )
        )

    figures["chronicle_poke_5_signers_gas"] = CHRONICLE_POKE_5_SIGNERS
    figures["chronicle_poke_10_signers_gas"] = CHRONICLE_POKE_10_SIGNERS
    print(f"{'measurement':<34} {'gas':>10}")
    print("-" * 45)
    for name, gas in figures.items():
        print(f"{name:<34} {gas:>10,}")
    print(
        f"(5-of-5 vs Chronicle poke: {figures['report_5of5_gas'] - CHRONICLE_POKE_5_SIGNERS:+,} gas; "
        f"10-of-10 vs Chronicle: {figures['report_10of10_gas'] - CHRONICLE_POKE_10_SIGNERS:+,} gas; "
        f"3-of-4 vs the network goal: {figures['report_3of4_gas'] - NETWORK_3_OF_4_GOAL:+,} gas)"
    )
    out: dict[str, object] = dict(figures)
    out["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
