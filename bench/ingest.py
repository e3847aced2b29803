"""Telemetry ingest throughput and breach-to-void latency, measured end to end on real parts.

Starts its own mosquitto on a free port, registers devices in a SQLite (WAL) database in a temp dir and
publishes N signed single-reading envelopes at QoS 1 from several publisher processes, for each of
``--reps`` interleaved repetitions (raw, ingest, raw, ingest, ...; the machine may be shared, so the two
are measured side by side and the ratio is taken per repetition):

(a) ``raw_subscriber_msgs_per_s``: a bare paho QoS 1 subscriber (auto-ack, no work): this machine's limit;
(b) ``ingest_msgs_per_s``: the IngestWorker (verify HMAC, validate, commit, ack after the commit).

Both rates are N divided by the time from the publishers' start signal until the N-th message was
received (a) or committed (b); the figures are the medians over the repetitions.

(c) ``breach_to_void_p50_ms`` / ``_p99_ms``: anvil with the contracts (1-of-1 signer set, the shipped
cold-chain model approved), K escrows; per shipment one breaching reading is published and timed until
the escrow's ``ShipmentVoided`` is mined: worker commit → evaluation loop (``evaluate_shipment`` +
``post_decision``) → outbox → router → escrow.

Prints a table and ONE final JSON line.
Usage: ``python bench/ingest.py [--n 50000] [--publishers 2] [--reps 2] [--shipments 20]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.telemetry import IncomingMessage, TelemetryIngest, sign_envelope
from ingest.telemetry.worker import IngestWorker, WorkerConfig, WorkerStats, telemetry_topic
from oracle.broker import start_mosquitto
from oracle.devices import Kek, register_device
from oracle.storage import migrate
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.db import make_engine, session_factory

DEVICES = 50
ESCROW_AMOUNT = 2_500 * 10**6  # tUSD base units (6 decimals)


def _publish(port: int, worker_index: int, n: int, secrets: dict[str, str], seq_base: int, go: Any) -> None:
    """One publisher process: ``n`` signed readings spread over the devices, QoS 1, waits for PUBACKs."""
    names = sorted(secrets)
    keys = {d: bytes.fromhex(s) for d, s in secrets.items()}
    t0 = int(time.time() * 1000) - 10_000_000
    payloads = []
    for i in range(n):
        device = names[i % len(names)]
        seq = seq_base + worker_index * n + i
        payloads.append(
            (
                device,
                json.dumps(
                    sign_envelope({"seq": seq, "ts": t0 + seq - seq_base, "temp_c": 4.5}, keys[device])
                ),
            )
        )
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{worker_index}-{seq_base}", protocol=mqtt.MQTTv5
    )
    c.max_inflight_messages_set(500)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    go.wait()
    infos = [c.publish(telemetry_topic(d), p, qos=1) for d, p in payloads]
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def _run_publishers(
    port: int, n: int, publishers: int, secrets: dict[str, str], seq_base: int
) -> tuple[list[Any], float]:
    """Start the publisher processes; returns them and the perf_counter time of their start signal."""
    ctx = mp.get_context("fork")  # children inherit the imports; nothing is threaded yet in them
    go = ctx.Event()
    procs = [
        ctx.Process(target=_publish, args=(port, i, n // publishers, secrets, seq_base, go), daemon=True)
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)  # let them build and sign their payloads before the clock starts
    started = time.perf_counter()
    go.set()
    return procs, started


def raw_rate(port: int, n: int, publishers: int, secrets: dict[str, str], seq_base: int) -> float:
    received = [0]
    done = threading.Event()
    finished: list[float] = []

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        received[0] += 1
        if received[0] == n:
            finished.append(time.perf_counter())
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{seq_base}", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("oracle/v1/telemetry/+", qos=1)
    c.loop_start()
    time.sleep(0.5)
    procs, started = _run_publishers(port, n, publishers, secrets, seq_base=seq_base)
    if not done.wait(300):
        raise SystemExit(f"bare subscriber received {received[0]} of {n} in 300 s")
    c.disconnect()
    c.loop_stop()
    for proc in procs:
        proc.join(30)
    return n / (finished[0] - started)


def ingest_rate(
    port: int, n: int, publishers: int, secrets: dict[str, str], ingest: TelemetryIngest, seq_base: int
) -> tuple[float, WorkerStats]:
    # No persistent session here: a stopped worker's session would keep queueing the next phases' messages.
    config = WorkerConfig(
        host="127.0.0.1", port=port, client_id=f"bench-worker-{seq_base}", share_group="", session_expiry_s=0
    )
    worker = IngestWorker(ingest, config)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    if not worker.subscribed.wait(10):
        raise SystemExit("ingest worker did not subscribe")
    procs, started = _run_publishers(port, n, publishers, secrets, seq_base=seq_base)
    deadline = time.monotonic() + 300
    while worker.stats.messages < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"ingest worker committed {worker.stats.messages} of {n} in 300 s")
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    worker.stop()
    thread.join(30)
    for p in procs:
        p.join(30)
    return n / elapsed, worker.stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="readings per throughput phase")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--reps", type=int, default=2, help="interleaved raw/ingest repetitions")
    ap.add_argument("--shipments", type=int, default=20, help="escrows voided in the latency phase")
    ap.add_argument("--spacing", type=float, default=0.25, help="seconds between breaching readings")
    args = ap.parse_args()
    raws: list[float] = []
    rates: list[float] = []
    stats: list[WorkerStats] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'oracle.sqlite3'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        kek = Kek.from_bytes(bytes(32))
        start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        secrets = {
            f"bench-{i}": register_device(
                sessions, kek, device_id=f"bench-{i}", shipment_id=f"SHP-{i}", valid_from=start
            ).hex()
            for i in range(DEVICES)
        }
        ingest = TelemetryIngest(sessions=sessions, blobs=FilesystemBlobStore(root / "blobs"), kek=kek)
        with start_mosquitto(data_dir=root / "broker") as broker:
            for rep in range(args.reps):
                base = (rep + 1) * 10_000_000
                raws.append(raw_rate(broker.port, args.n, args.publishers, secrets, seq_base=base))
                rate, st = ingest_rate(broker.port, args.n, args.publishers, secrets, ingest, seq_base=base)
                rates.append(rate)
                stats.append(st)
                print(f"rep {rep + 1}: raw {raws[-1]:.0f} msg/s, ingest {rate:.0f} msg/s", file=sys.stderr)
            latency = breach_to_void(broker.port, root, args.shipments, args.spacing)
        engine.dispose()
    stored = sum(s.readings_accepted for s in stats)
    if stored != args.n * args.reps:  # a rate over refused or duplicate readings would mean nothing
        raise SystemExit(f"the worker stored {stored} of {args.n * args.reps} readings: {stats}")
    raw, rate = statistics.median(raws), statistics.median(rates)
    batches = sum(s.batches for s in stats)
    figures = {
        "n": args.n,
        "publishers": args.publishers,
        "reps": args.reps,
        "raw_subscriber_msgs_per_s": round(raw),
        "ingest_msgs_per_s": round(rate),
        "ingest_over_raw": round(rate / raw, 3),
        "ingest_over_raw_per_rep": [round(i / r, 3) for i, r in zip(rates, raws, strict=True)],
        "ingest_batches": batches,
        "ingest_mean_batch": round(sum(s.messages for s in stats) / max(batches, 1), 1),
        "readings_stored": stored,
        **latency,
    }
    print(f"{'figure':32} {'value':>16}")
    for k, v in figures.items():
        print(f"{k:32} {v!s:>16}")
    print(json.dumps(figures))


# --- breach → void latency ------------------------------------------------------------------------------


def _open_escrows(w3: Any, deployment: Any, accounts: list[Any], shipments: list[str]) -> None:
    """One funded escrow per shipment, refrigerated profile, a month's deadline (as the buyer would)."""
    from oracle.chain.client import transact
    from oracle.decisions.coldchain import profile_bytes32
    from oracle.reports import subject_id

    deployer, buyer, seller = accounts[0], accounts[2], accounts[3]
    coin = deployment.contract(w3, "TestStablecoin")
    escrow = deployment.contract(w3, "ColdChainEscrow")
    total = ESCROW_AMOUNT * len(shipments)
    transact(w3, coin.functions.mint(buyer.address, total), sender=deployer)
    transact(w3, coin.functions.approve(escrow.address, total), sender=buyer)
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
    for name in shipments:
        call = escrow.functions.createShipment(
            subject_id("shipment", name),
            seller.address,
            coin.address,
            ESCROW_AMOUNT,
            profile_bytes32("refrigerated"),
            deadline,
        )
        transact(w3, call, sender=buyer)


def breach_to_void(port: int, root: Path, shipments: int, spacing_s: float) -> dict[str, Any]:
    """Publish one breaching reading per shipment (``spacing_s`` apart) and time each until the escrow's
    ``ShipmentVoided`` is mined on anvil: MQTT → worker commit → evaluation loop (``evaluate_shipment`` +
    ``post_decision``, as the scheduler runs them) → outbox → router → escrow. Milliseconds."""
    import datetime as dt

    from eth_account import Account
    from eth_utils.crypto import keccak
    from sqlalchemy import func, select

    from oracle.chain.anvil import dev_accounts, start_anvil
    from oracle.chain.client import connect
    from oracle.chain.deploy import deploy_all
    from oracle.chain.outbox import OutboxPoster
    from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment
    from oracle.decisions.post import post_decision
    from oracle.localchain import shipped_model_approvals
    from oracle.reports import Verdict, subject_id
    from oracle.signer.client import LocalSigner
    from oracle.storage.tables import TelemetryReading

    url = f"sqlite:///{root / 'latency.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    blobs = FilesystemBlobStore(root / "latency-blobs")
    kek = Kek.from_bytes(bytes(range(32)))
    names = [f"SHP-L{i}" for i in range(shipments)]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    secrets = {
        n: register_device(sessions, kek, device_id=f"lat-{n}", shipment_id=n, valid_from=since)
        for n in [*names, "SHP-WARMUP"]
    }
    by_subject = {bytes(subject_id("shipment", n)): n for n in names}
    # A throwaway oracle key (bench only): the router trusts it as a 1-of-1 signer set.
    oracle_key = Account.from_key(keccak(b"bench-ingest-oracle-signer"))
    stop = threading.Event()
    published: dict[str, float] = {}
    voided: dict[str, float] = {}
    evaluations = [0]
    with start_anvil() as anvil:
        w3 = connect(anvil.url)
        accounts = dev_accounts(4)
        deployment = deploy_all(
            w3,
            deployer=accounts[0],
            signers=[oracle_key.address],
            threshold=1,
            pool_funding=0,
            chainlink=False,
            models=shipped_model_approvals(),
        )
        _open_escrows(w3, deployment, accounts, names)
        escrow = deployment.contract(w3, "ColdChainEscrow")
        router = deployment.address("OracleRouter")
        signer = LocalSigner(bytes(oracle_key.key))
        poster = OutboxPoster(sessions, w3, accounts[1], confirmations=1)

        ingest = TelemetryIngest(sessions=sessions, blobs=blobs, kek=kek)
        # A running service has its imports and model loaded: warm that path up on a shipment in range
        # (no escrow, no verdict) so the first timed breach does not pay a one-off cold start.
        warm = {"seq": 1, "ts": int(time.time() * 1000), "temp_c": 5.0}
        payload = json.dumps(sign_envelope(warm, secrets["SHP-WARMUP"])).encode()
        ingest.process([IncomingMessage("lat-SHP-WARMUP", payload)])
        evaluate_shipment(
            sessions, blobs, shipment_id="SHP-WARMUP", terms=ShipmentTerms(profile="refrigerated")
        )
        with sessions() as s:
            first_id = int(s.scalar(select(func.max(TelemetryReading.id))) or 0)

        def evaluation_loop() -> None:
            # What the scheduler does on new telemetry, without its debounce: evaluate each shipment that
            # got new readings and post a complete verdict through the signer and the outbox.
            last_id = first_id
            posted: set[str] = set()
            while not stop.is_set():
                with sessions() as s:
                    rows = s.execute(
                        select(TelemetryReading.id, TelemetryReading.shipment_id).where(
                            TelemetryReading.id > last_id
                        )
                    ).all()
                if not rows:
                    stop.wait(0.01)
                    continue
                last_id = max(r.id for r in rows)
                for shipment in sorted({r.shipment_id for r in rows} - posted):
                    outcome = evaluate_shipment(
                        sessions, blobs, shipment_id=shipment, terms=ShipmentTerms(profile="refrigerated")
                    )
                    evaluations[0] += 1
                    if outcome.report is not None and outcome.report.value == int(Verdict.BREACH):
                        post_decision(
                            sessions,
                            outcome,
                            subject_name=shipment,
                            signers=[signer],
                            threshold=1,
                            chain_id=deployment.chain_id,
                            router=router,
                        )
                        posted.add(shipment)

        def outbox_loop() -> None:
            while not stop.is_set():
                r = poster.pump()
                if not (r.signed or r.sent or r.confirmed or r.open):
                    stop.wait(0.01)  # idle: nothing queued; busy rows are pumped again at once

        def void_watch() -> None:
            event = escrow.events.ShipmentVoided()
            start_block = int(w3.eth.block_number)
            while not stop.is_set():
                head = int(w3.eth.block_number)
                if head >= start_block:
                    for log in event.get_logs(from_block=start_block, to_block=head):
                        name = by_subject[bytes(log["args"]["shipmentId"])]
                        voided.setdefault(name, time.perf_counter())
                    start_block = head + 1
                stop.wait(0.005)

        worker = IngestWorker(
            ingest, WorkerConfig(host="127.0.0.1", port=port, client_id="bench-latency", share_group="")
        )
        threads = [
            threading.Thread(target=f, daemon=True)
            for f in (worker.run, evaluation_loop, outbox_loop, void_watch)
        ]
        for t in threads:
            t.start()
        worker.subscribed.wait(10)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-latency-pub", protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        for n in names:
            ts = int(time.time() * 1000)
            body = {"seq": 1, "ts": ts, "temp_c": 55.0}  # above the refrigerated hard limit (50 °C)
            breach = json.dumps(sign_envelope(body, secrets[n]))
            published[n] = time.perf_counter()
            pub.publish(telemetry_topic(f"lat-{n}"), breach, qos=1)
            time.sleep(spacing_s)
        deadline = time.monotonic() + 60
        while len(voided) < len(names) and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        worker.stop()
        for t in threads:
            t.join(30)
        pub.disconnect()
        pub.loop_stop()
    engine.dispose()
    if len(voided) < len(names):
        raise SystemExit(f"only {len(voided)} of {len(names)} escrows were voided within 60 s")
    lat = sorted((voided[n] - published[n]) * 1000 for n in names)
    return {
        "breach_shipments": len(names),
        "breach_to_void_p50_ms": round(_quantile(lat, 0.50)),
        "breach_to_void_p99_ms": round(_quantile(lat, 0.99)),
        "breach_to_void_max_ms": round(lat[-1]),
        "breach_evaluations": evaluations[0],
    }


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


if __name__ == "__main__":
    main()
