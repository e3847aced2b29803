"""The oracle network beside the single node: breach-to-void latency, report gas, peer messages per report.

Runs alone (it starts everything it needs on free ports) and measures, in one run, side by side:

- ``network``: 4 nodes, k = 3 (``oracle run --network DIR --node ID`` processes, each with its own
  database, content store, signer child process, ingest worker and scheduler; one anvil, one mosquitto).
  Every node ingests each breaching reading itself, evaluates the shipment, has its signer sign its own
  report and sends the signature to the others; the scheduled node transmits once 3 agree.
- ``single``: one ``oracle run --no-demo`` (bench/ingest.py's ``service`` set-up), with threshold 1.

For each: K escrows on its chain, one enrolled logger per shipment (on every node of the network, with one
secret), a first untimed breach to warm up, then one breaching reading per shipment published at QoS 1
(``--spacing`` apart, jittered ±50 %) and the chain polled every 20 ms for each ``ShipmentVoided``.
``breach_to_void_*`` is publish → void seen mined.

Also: ``report_3of4_gas``, the router's ``submit`` in steady state with 3 of 4 signatures (bench/gas.py's
measurement, on this run's network chain); ``network_void_gas_median``, what the network's void
transactions used (router and escrow); ``peer_messages_per_report``, signature messages all nodes sent
divided by the reports that landed. Synthetic telemetry; figures from this machine, which is shared.

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench_module(name: str) -> Any:
    """A sibling bench script as a module (bench/ is not a package; ``ingest`` is also the project's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gas_bench = _bench_module("gas")
single_bench = _bench_module("ingest")  # the single-node set-up

BREACH_C = single_bench.BREACH_C
VOID_WAIT_S = 120.0


def _quantile(values: list[float], q: float) -> float:
    return single_bench._quantile(sorted(values), q)


def network_breach_to_void(root: Path, *, shipments: int, spacing_s: float) -> dict[str, Any]:
    from oracle.chain.anvil import dev_accounts, start_anvil
    from oracle.devstack.broker import start_mosquitto
    from tests.network.cluster import Cluster, wait_until

    warmup = single_bench.buyer_name("SHP-NET-WARMUP")
    names = [single_bench.buyer_name(f"SHP-NET-{i}") for i in range(shipments)]
    with contextlib.ExitStack() as stack:
        anvil = start_anvil()
        stack.callback(anvil.stop)
        broker = start_mosquitto(data_dir=root / "mqtt")
        stack.callback(broker.stop)
        cluster = Cluster(root / "net", anvil.url, broker.url, nodes=4, threshold=3, transmit_timeout_s=2.0)
        cluster.setup(root / "world", seed_world=False)
        stack.callback(cluster.stop_all)
        started = time.monotonic()
        cluster.start_all()
        startup_s = time.monotonic() - started
        w3 = cluster.w3
        single_bench._open_escrows(w3, cluster.deployment, dev_accounts(4), [warmup, *names])
        wait_until(
            lambda: all(cluster.knows_shipment(m, n) for m in cluster.network.ids for n in [warmup, *names]),
            timeout=90,
            what="every node to see every escrow",
        )
        since = int(time.time()) - 3600
        secrets = {n: os.urandom(32) for n in [warmup, *names]}
        for n in [warmup, *names]:
            cluster.enroll(single_bench.logger_of(n), n, start_s=since, secret=secrets[n])
        escrow = cluster.deployment.contract(w3, "ColdChainEscrow")
        watch = single_bench.VoidWatch(anvil.url, escrow, [warmup, *names])
        watch.start()
        stack.callback(watch.stopping.set)
        pub = single_bench.Publisher(broker.url, broker.admin_login)
        stack.callback(pub.close)
        t_warm, mid = pub.publish(single_bench.logger_of(warmup), secrets[warmup], BREACH_C)
        if pub.code(mid) != 0:
            raise SystemExit("network: no telemetry consumer subscribed")
        if not watch.wait_for([warmup], VOID_WAIT_S):
            raise SystemExit(f"network: the warm-up escrow was not voided within {VOID_WAIT_S:.0f} s")
        published: dict[str, float] = {}
        gaps = random.Random(17)
        for n in names:
            published[n], _ = pub.publish(single_bench.logger_of(n), secrets[n], BREACH_C)
            time.sleep(spacing_s * gaps.uniform(0.5, 1.5))
        if not watch.wait_for(names, VOID_WAIT_S):
            missing = [n for n in names if n not in watch.voided]
            raise SystemExit(f"network: {len(missing)} escrows not voided within {VOID_WAIT_S:.0f} s")
        watch.stopping.set()
        totals = sorted((watch.voided[n] - published[n]) * 1000 for n in names)
        time.sleep(1.0)  # let every node see its rounds land before the counters are read
        sent = 0.0
        landed = 0.0
        for m in cluster.network.members:
            text = httpx.get(m.url + "/metrics", timeout=10).text
            for line in text.splitlines():
                if line.startswith('oracle_network_events_total{event="peer_messages_sent"}'):
                    sent += float(line.split()[-1])
        router = cluster.deployment.contract(w3, "OracleRouter")
        accepted = router.events.ReportAccepted().get_logs(from_block=cluster.deployment.block)
        landed = float(len(accepted))
        voided = escrow.events.ShipmentVoided().get_logs(from_block=cluster.deployment.block)
        per_subject: dict[bytes, int] = {}
        for log in voided:
            key = bytes(log["args"]["shipmentId"])
            per_subject[key] = per_subject.get(key, 0) + 1
        void_gas = [int(w3.eth.get_transaction_receipt(log["transactionHash"])["gasUsed"]) for log in voided]
        owner, relayer = dev_accounts(2)
        gas_3of4 = gas_bench.steady_state_gas(w3, owner, relayer, 4, 3)
    return {
        "p50_ms": round(_quantile(totals, 0.50)),
        "p99_ms": round(_quantile(totals, 0.99)),
        "max_ms": round(totals[-1]),
        "first_ms": round((watch.voided[warmup] - t_warm) * 1000),
        "startup_s": round(startup_s, 1),
        "peer_messages_per_report": round(sent / landed, 2) if landed else None,
        "reports_landed": int(landed),
        "max_voids_per_shipment": max(per_subject.values()),
        "void_gas_median": int(statistics.median(void_gas)),
        "report_3of4_gas": gas_3of4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shipments", type=int, default=20, help="timed breaches per set-up")
    parser.add_argument("--spacing", type=float, default=1.0, help="mean seconds between breaches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        root = Path(tmp)
        net = network_breach_to_void(root / "network", shipments=args.shipments, spacing_s=args.spacing)
        single = single_bench.breach_to_void(
            root / "single", setup="service", shipments=args.shipments, spacing_s=args.spacing
        )
    rows = [
        ("breach → void p50 (ms)", net["p50_ms"], single["p50_ms"]),
        ("breach → void p99 (ms)", net["p99_ms"], single["p99_ms"]),
        ("breach → void max (ms)", net["max_ms"], single["max_ms"]),
        ("first (cold) breach → void (ms)", net["first_ms"], single["first_ms"]),
    ]
    print(f"Breach to void, {args.shipments} shipments, publish → ShipmentVoided mined (synthetic telemetry)")
    print(f"{'':34} {'network 3-of-4':>15} {'single node':>12}")
    for label, a, b in rows:
        print(f"{label:34} {a:>15,} {b:>12,}")
    print()
    landed, per = net["reports_landed"], net["peer_messages_per_report"]
    print(f"network: {landed} reports landed, {per} peer messages each,")
    most, median = net["max_voids_per_shipment"], net["void_gas_median"]
    print(f"  at most {most} void per shipment, void gas median {median:,},")
    print(f"  router submit 3 of 4 in steady state {net['report_3of4_gas']:,} gas (goal ≤ 66,000)")
    print(f"  4 node processes healthy {net['startup_s']} s after launch")
    figures = {
        "shipments": args.shipments,
        "breach_to_void_p50_ms": net["p50_ms"],
        "breach_to_void_p99_ms": net["p99_ms"],
        "breach_to_void_max_ms": net["max_ms"],
        "single_breach_to_void_p50_ms": single["p50_ms"],
        "single_breach_to_void_p99_ms": single["p99_ms"],
        "report_3of4_gas": net["report_3of4_gas"],
        "network_void_gas_median": net["void_gas_median"],
        "peer_messages_per_report": net["peer_messages_per_report"],
        "max_voids_per_shipment": net["max_voids_per_shipment"],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
