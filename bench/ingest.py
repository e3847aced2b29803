"""Telemetry ingest throughput: a bare paho subscriber against the durable worker, in one run.

Starts its own mosquitto on a free port, registers devices in a SQLite (WAL) database in a temp dir and
publishes N signed single-reading envelopes at QoS 1 from several publisher processes, twice:

(a) ``raw_subscriber_msgs_per_s``: a bare paho QoS 1 subscriber (auto-ack, no work): this machine's limit;
(b) ``ingest_msgs_per_s``: the IngestWorker (verify HMAC, validate, commit, ack after the commit).

Prints a table and ONE final JSON line. Usage: ``python bench/ingest.py [--n 50000] [--publishers 2]``.
Further phases (e.g. breach→void latency) add a function returning a dict and a call in :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.telemetry import TelemetryIngest, sign_envelope
from ingest.telemetry.worker import IngestWorker, WorkerConfig, telemetry_topic
from oracle.broker import start_mosquitto
from oracle.devices import Kek, register_device
from oracle.storage import migrate
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.db import make_engine, session_factory

DEVICES = 50


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
            (device, json.dumps(sign_envelope({"seq": seq, "ts": t0 + seq, "temp_c": 4.5}, keys[device])))
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


def _run_publishers(port: int, n: int, publishers: int, secrets: dict[str, str], seq_base: int) -> list[Any]:
    ctx = mp.get_context("fork")  # children inherit the imports; nothing is threaded yet in them
    go = ctx.Event()
    procs = [
        ctx.Process(target=_publish, args=(port, i, n // publishers, secrets, seq_base, go), daemon=True)
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)  # let them build and sign their payloads before the clock starts
    go.set()
    return procs


def raw_rate(port: int, n: int, publishers: int, secrets: dict[str, str]) -> float:
    received = [0]
    done = threading.Event()
    first: list[float] = []

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        if not first:
            first.append(time.perf_counter())
        received[0] += 1
        if received[0] >= n:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("oracle/v1/telemetry/+", qos=1)
    c.loop_start()
    time.sleep(0.5)
    procs = _run_publishers(port, n, publishers, secrets, seq_base=0)
    done.wait(300)
    elapsed = time.perf_counter() - first[0]
    c.disconnect()
    c.loop_stop()
    for p in procs:
        p.join(30)
    return received[0] / elapsed


def ingest_rate(
    port: int, n: int, publishers: int, secrets: dict[str, str], ingest: TelemetryIngest
) -> tuple[float, Any]:
    worker = IngestWorker(ingest, WorkerConfig(host="127.0.0.1", port=port, client_id="bench-worker"))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    worker.subscribed.wait(10)
    procs = _run_publishers(port, n, publishers, secrets, seq_base=10_000_000)
    while worker.stats.messages == 0:
        time.sleep(0.001)
    start = time.perf_counter()
    start_count = worker.stats.messages
    while worker.stats.messages < n:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    worker.stop()
    thread.join(30)
    for p in procs:
        p.join(30)
    return (n - start_count) / elapsed, worker.stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="readings per phase")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'oracle.sqlite3'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        kek = Kek.from_bytes(bytes(32))
        import datetime as dt

        start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        secrets = {
            f"bench-{i}": register_device(
                sessions, kek, device_id=f"bench-{i}", shipment_id=f"SHP-{i}", valid_from=start
            ).hex()
            for i in range(DEVICES)
        }
        ingest = TelemetryIngest(sessions=sessions, blobs=FilesystemBlobStore(root / "blobs"), kek=kek)
        with start_mosquitto(data_dir=root / "broker") as broker:
            raw = raw_rate(broker.port, args.n, args.publishers, secrets)
            rate, stats = ingest_rate(broker.port, args.n, args.publishers, secrets, ingest)
        engine.dispose()
    figures = {
        "n": args.n,
        "publishers": args.publishers,
        "raw_subscriber_msgs_per_s": round(raw),
        "ingest_msgs_per_s": round(rate),
        "ingest_over_raw": round(rate / raw, 3),
        "ingest_batches": stats.batches,
        "ingest_mean_batch": round(stats.messages / max(stats.batches, 1), 1),
        "readings_stored": stats.readings_accepted,
    }
    print(f"{'figure':32} {'value':>12}")
    for k, v in figures.items():
        print(f"{k:32} {v:>12}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
