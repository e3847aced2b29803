"""Benchmark: from ReportAccepted to the watcher's dispute evidence, on anvil with one node's public API.

A drought decision is evaluated from the synthetic world of the tests (tests/drought/world.py:
synthetic rasters, labelled as such) and posted honestly; then a faulty signer set posts ``--reports``
tampered revisions (same manifest, other values, k signatures), one at a time. ``oracle watch``'s
:class:`Watcher` polls every ``--interval`` seconds in a thread of this process and replays each report
from the node's public endpoints. anvil mines on send, so the poster's ``sent`` moment is the moment
the report was accepted on-chain.

Side by side: the end-to-end time (accepted → evidence written) and the replay alone (the watcher's
check of one report, timed directly), so the share of the polling interval is visible.

With ``--dispute`` the pool has a product with a one-hour liveness window on the region, disputes are
on (bond 50, reward 20 tokens) and the watcher has a funded account of its own: each tampered report is
also disputed on-chain (approve + dispute through the watcher's outbox), and the time from
ReportAccepted to the dispute confirmed is measured, with the gas of approve, ``dispute`` and of
``resolveDispute`` upheld by the network's replacement revision.

Run alone: ``.venv/bin/python bench/watch.py [--reports 20] [--interval 0.2] [--dispute]``; ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    import uvicorn
    from eth_account import Account
    from eth_utils.crypto import keccak

    from oracle.api.app import create_app
    from oracle.attest import attest
    from oracle.chain.anvil import dev_accounts, free_port, start_anvil
    from oracle.chain.artifacts import load_artifact
    from oracle.chain.client import connect
    from oracle.chain.deploy import deploy_all
    from oracle.chain.outbox import OutboxPoster
    from oracle.config import Settings
    from oracle.context import open_context
    from oracle.decisions.drought import evaluate_drought
    from oracle.signer.client import LocalSigner
    from oracle.verify.replay import MISMATCH
    from oracle.verify.watch import Watcher
    from tests.drought.world import PERIOD, build
    from tests.fixtures.chain import TEST_MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.2, help="watcher poll interval, seconds")
    parser.add_argument("--dispute", action="store_true", help="file each dispute on-chain too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, start_anvil() as anvil:
        root = Path(tmp)
        w3 = connect(anvil.url)
        deployer, relayer = dev_accounts(2)
        keys = sorted(
            (Account.from_key(keccak(f"bench-watch-signer-{i}".encode())) for i in range(3)),
            key=lambda k: int(k.address, 16),
        )
        dep = deploy_all(
            w3,
            deployer=deployer,
            signers=[k.address for k in keys],
            threshold=2,
            chainlink=False,
            models=TEST_MODELS,
        )
        router = dep.address("OracleRouter")
        signers = [LocalSigner(bytes(k.key)) for k in keys]
        data = root / "data"
        ctx = open_context(
            Settings(env="dev", data_dir=data, database_url=f"sqlite:///{data / 'o.sqlite3'}", _env_file=None)  # type: ignore[call-arg]
        )
        build(ctx.sessions, ctx.blobs, root)
        outcome = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
        assert outcome.report is not None
        sent: dict[str, float] = {}

        def hook(step: str, row: object) -> None:
            if step == "sent":
                sent.setdefault(str(row.tx_hash), time.monotonic())  # type: ignore[attr-defined]

        poster = OutboxPoster(ctx.sessions, w3, relayer, hook=hook)
        detail = {"manifest_cid": outcome.manifest_cid}

        def post(report: object) -> None:
            attest(
                ctx.sessions,
                report,  # type: ignore[arg-type]
                signers=signers,
                threshold=2,
                chain_id=dep.chain_id,
                router=router,
                subject_name="dry",
                detail=detail,
            )
            poster.run_until_settled(timeout=60, interval=0.05)

        pool = w3.eth.contract(
            address=dep.address("DroughtInsurancePool"), abi=load_artifact("DroughtInsurancePool").abi
        )
        coin = w3.eth.contract(address=dep.address("TestStablecoin"), abi=load_artifact("TestStablecoin").abi)
        filer = None
        if args.dispute:
            from oracle.chain.client import transact
            from oracle.verify.dispute_filer import DisputeFiler

            obs = outcome.report.observed_at
            call = pool.functions.createPolicy(
                relayer.address,
                outcome.report.subject,
                obs - 100 * 86_400,
                obs + 100 * 86_400,
                0,
                5_000_000,
                10**9,
            )
            transact(w3, call, sender=deployer)
            transact(
                w3,
                pool.functions.setLiveness(int(pool.functions.productCount().call()), 3_600),
                sender=deployer,
            )
            transact(w3, pool.functions.setDisputeTerms(50 * 10**6, 20 * 10**6, 7_200), sender=deployer)
            watcher_account = Account.create()
            w3.provider.make_request("anvil_setBalance", [watcher_account.address, hex(10**19)])  # type: ignore[arg-type]
            transact(
                w3, coin.functions.mint(watcher_account.address, 50 * 10**6 * args.reports), sender=deployer
            )
            filer = DisputeFiler(
                w3, pool=pool.address, account=watcher_account, db_path=root / "disputes.sqlite3"
            )
        post(outcome.report)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        watcher = Watcher(
            w3,
            router=router,
            nodes=[f"http://127.0.0.1:{port}"],
            state_path=root / "watch.json",
            evidence_dir=root / "evidence",
            from_block=dep.block,
            filer=filer,
        )
        watcher.poll()  # the honest report: a match, before the clock starts
        detected: dict[str, float] = {}
        filed: dict[str, float] = {}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                results = watcher.poll()  # with a filer, the pass ends with the disputes confirmed
                done = time.monotonic()
                for r in results:
                    if r.status == MISMATCH:
                        detected.setdefault(r.tx_hash, done)
                        if r.dispute == "queued":
                            filed.setdefault(r.tx_hash, done)
                stop.wait(args.interval)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        for i in range(args.reports):
            tampered = dataclasses.replace(
                outcome.report,
                value=(outcome.report.value + 100_000 * (i + 1)) % 5_000_000,
                epoch=outcome.report.epoch + 1 + i,
            )
            post(tampered)
            deadline = time.monotonic() + 30
            while len(filed if args.dispute else detected) < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        stop.set()
        thread.join(timeout=10)
        gas: dict[str, int] = {}
        if filer is not None:
            from sqlalchemy import select

            from oracle.chain.client import transact
            from oracle.storage.tables import OutboxRow

            with filer.sessions() as s:
                for purpose in ("dispute-approve", "dispute"):
                    used = [
                        int(r.gas_used or 0)
                        for r in s.scalars(select(OutboxRow).where(OutboxRow.purpose == purpose))
                    ]
                    gas[purpose] = round(statistics.median(used))
            # The network's replacement (the decision's own value) upholds the last dispute.
            last = outcome.report.epoch + args.reports
            post(dataclasses.replace(outcome.report, epoch=last + 1))
            receipt = transact(
                w3, pool.functions.resolveDispute(outcome.report.subject, last), sender=deployer
            )
            gas["resolveDispute upheld"] = int(receipt["gasUsed"])
        latencies = [(detected[tx] - sent[tx]) * 1000 for tx in detected if tx in sent]
        filed_ms = [(filed[tx] - sent[tx]) * 1000 for tx in filed if tx in sent]
        watcher.filer = None  # the replay alone: no dispute bookkeeping
        replay_ms = []
        for tx in list(detected)[:10]:
            t0 = time.monotonic()
            assert watcher.check(tx).status == MISMATCH
            replay_ms.append((time.monotonic() - t0) * 1000)
        watcher.close()
        server.should_exit = True
        ctx.close()

    missed = args.reports - len(latencies)
    print(f"ReportAccepted → dispute evidence, {args.reports} tampered reports (synthetic drought world),")
    print(f"watcher polling every {args.interval * 1000:.0f} ms, one node's public API, anvil")
    print(f"{'':36} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, xs in (
        ("accepted → evidence (end to end)", latencies),
        ("replay of one report alone", replay_ms),
        *((("accepted → dispute confirmed", filed_ms),) if filed_ms else ()),
    ):
        print(f"{label:36} {_pct(xs, 0.5):>8.0f} {_pct(xs, 0.99):>8.0f} {max(xs):>8.0f}")
    print(f"reports not caught within 30 s: {missed}")
    for name, used in gas.items():
        print(f"gas {name}: {used:,}")
    figures = {
        "reports": args.reports,
        "poll_interval_ms": round(args.interval * 1000),
        "accepted_to_evidence_p50_ms": round(_pct(latencies, 0.5)),
        "accepted_to_evidence_p99_ms": round(_pct(latencies, 0.99)),
        "replay_p50_ms": round(statistics.median(replay_ms)),
        "missed": missed,
    }
    if filed_ms:
        figures["accepted_to_dispute_p50_ms"] = round(_pct(filed_ms, 0.5))
        figures["accepted_to_dispute_p99_ms"] = round(_pct(filed_ms, 0.99))
        figures.update({f"gas_{k.replace(' ', '_')}": v for k, v in gas.items()})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
