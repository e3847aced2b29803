"""Benchmark: from ReportAccepted to the watcher's dispute evidence, on anvil with one node's public API.

A drought decision is evaluated from the synthetic world of the tests (tests/drought/world.py:
synthetic rasters, labelled as such) and posted honestly; then a faulty signer set posts ``--reports``
tampered revisions (same manifest, other values, k signatures), one at a time. ``oracle watch``'s
:class:`Watcher` polls every ``--interval`` seconds in a thread of this process and replays each report
from the node's public endpoints. anvil mines on send, so the poster's ``sent`` moment is the moment
the report was accepted on-chain.

Side by side: the end-to-end time (accepted → evidence written) and the replay alone (the watcher's
check of one report, timed directly), so the share of the polling interval is visible.

Run alone: ``.venv/bin/python bench/watch.py [--reports 20] [--interval 0.2]``; ends with one JSON line.
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
        )
        watcher.poll()  # the honest report: a match, before the clock starts
        detected: dict[str, float] = {}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                for r in watcher.poll():
                    if r.status == MISMATCH:
                        detected.setdefault(r.tx_hash, time.monotonic())
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
            while len(detected) < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        stop.set()
        thread.join(timeout=10)
        latencies = [(detected[tx] - sent[tx]) * 1000 for tx in detected if tx in sent]
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
    ):
        print(f"{label:36} {_pct(xs, 0.5):>8.0f} {_pct(xs, 0.99):>8.0f} {max(xs):>8.0f}")
    print(f"reports not caught within 30 s: {missed}")
    figures = {
        "reports": args.reports,
        "poll_interval_ms": round(args.interval * 1000),
        "accepted_to_evidence_p50_ms": round(_pct(latencies, 0.5)),
        "accepted_to_evidence_p99_ms": round(_pct(latencies, 0.99)),
        "replay_p50_ms": round(statistics.median(replay_ms)),
        "missed": missed,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
