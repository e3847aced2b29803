"""`oracle run` with its demo: a local network of 3 nodes (k = 2). Within three minutes a payout and a
void happen on-chain and node 1's API (which the dashboard reads) shows them, with the nodes that signed
each report and the one that transmitted it — through the real pipeline, real anvil, mosquitto, three
node processes and their signers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from pypdf import PdfReader
from sqlalchemy import select

from oracle.attest import attest, row_to_report
from oracle.chain.client import connect
from oracle.chain.deploy import Deployment
from oracle.devstack.demo import demo_shipments
from oracle.devstack.localnet import DEMO_LIVENESS_S
from oracle.network.node import DEPLOYMENT_FILE, RPC_URL_FILE
from oracle.reports import Report
from oracle.signer.client import LocalSigner
from oracle.storage.db import make_engine, session_factory
from oracle.storage.tables import ReportRow


def _post_tampered(network_dir: Path, dep: Deployment, region_name: str) -> Report:
    """As two faulty nodes: sign a revision of ``region_name``'s latest report with another value (node1's
    and node2's signer keys) and put it in node1's database with the honest manifest; node1 posts it."""
    sessions = session_factory(make_engine(f"sqlite:///{network_dir / 'nodes' / 'node1' / 'oracle.sqlite3'}"))
    with sessions() as s:
        row = s.scalars(
            select(ReportRow).where(ReportRow.subject_name == region_name).order_by(ReportRow.epoch.desc())
        ).first()
        assert row is not None
        honest, manifest = row_to_report(row), row.detail["manifest_cid"]
    value = honest.value - 500_000 if honest.value > 2_500_000 else honest.value + 1_500_000
    tampered = dataclasses.replace(honest, value=value, epoch=honest.epoch + 1)
    signers = []
    for node in ("node1", "node2"):
        signer_dir = network_dir / "nodes" / node / "signer"
        keystore = json.loads((signer_dir / "keystore.json").read_text())
        key = Account.decrypt(keystore, (signer_dir / "passphrase").read_text().strip())
        signers.append(LocalSigner(bytes(key)))
    attest(
        sessions,
        tampered,
        signers=signers,
        threshold=2,
        chain_id=dep.chain_id,
        router=dep.address("OracleRouter"),
        subject_name=region_name,
        detail={"manifest_cid": manifest},
    )
    return tampered


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports below Linux's ephemeral range (32768+): the network
    gives node i the API port base + i, and a port next to an ephemeral one the kernel handed out can be
    taken by the next outgoing connection before node i binds it (seen: node2 "address in use")."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - count)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + count):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports in 20000-32000")


@pytest.mark.chain
@pytest.mark.mqtt
@pytest.mark.slow
def test_demo_network_pays_out_and_voids_on_k_signatures(tmp_path: Path) -> None:
    port = _free_ports(3)  # node1..node3 listen on port, port + 1, port + 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env |= {"ORACLE_DATA_DIR": str(tmp_path / "data"), "ORACLE_API_PORT": str(port)}
    out = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from oracle.cli import main; main()", "run"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    started = time.monotonic()
    try:
        key = None
        while key is None:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            # Three nodes, their signers, a chain and a broker start on 2 cores: 85 s on a slow one.
            assert time.monotonic() - started < 180, "no admin key printed"
            found = re.search(r"admin API key \(shown once\): (\S+)", (tmp_path / "run.log").read_text())
            key = found.group(1) if found else None
            time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        paid = voided = False
        while not (paid and voided):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() - started < 350, (tmp_path / "run.log").read_text()[-3000:]
            try:
                payouts = httpx.get(f"{base}/v1/payouts", headers=headers, timeout=5).json()
                shipments = httpx.get(f"{base}/v1/shipments", headers=headers, timeout=5).json()
            except httpx.HTTPError:
                time.sleep(1)
                continue
            paid = any(int(p["amount"]) > 0 for p in payouts.get("items", []))
            voided = any(s["status"] == "voided" for s in shipments.get("items", []))
            time.sleep(1)
        page = httpx.get(base + "/", timeout=5)
        assert page.status_code == 200
        assert "Parametric oracle" in page.text
        # The drought reports: every node computed and signed the same report; one of them sent it.
        network = None
        while network is None:
            assert time.monotonic() - started < 300, (tmp_path / "run.log").read_text()[-3000:]
            overview = httpx.get(f"{base}/v1/dashboard/overview", headers=headers, timeout=10).json()
            words = [a["network"] for a in overview["attestations"] if a["subject_name"] == "KE-NORTH"]
            if words and words[0] and len(words[0]["signed"]) == 3 and words[0]["transmitted_by"]:
                network = words[0]
            time.sleep(1)
        assert network["disagreed"] == []
        assert network["round"] == "landed"
        assert network["transmitted_by"] in ("node1", "node2", "node3")
        # The voided shipment's disposition report, signed by the demo's QA person, kept as a PDF.
        # The overheated shipment, by its name: the demo buyer's address, ":", its reference.
        breached = next(name for name, excursion in demo_shipments().items() if excursion)
        assert breached.endswith(":SHP-VACCINES-2")
        report = tmp_path / "data" / "network" / "dispositions" / f"{breached}.pdf"
        while not report.exists():
            assert time.monotonic() - started < 360, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(1)
        time.sleep(1)  # written in one call; let it land
        voided_tx = next(s["settled_tx"] for s in shipments["items"] if s["status"] == "voided")
        chain_check = httpx.get(f"{base}/v1/disposition-signoffs/verify", headers=headers, timeout=10).json()
        assert chain_check["ok"] is True
        assert chain_check["entries"] >= 1
        # The honest reports paid only after the insurer's liveness window (the nodes' keepers settled).
        network_dir = tmp_path / "data" / "network"
        dep = Deployment.load(network_dir / DEPLOYMENT_FILE)
        w3 = connect((network_dir / RPC_URL_FILE).read_text().strip())
        pool = dep.contract(w3, "DroughtInsurancePool")
        sent = pool.events.PayoutSent().get_logs(from_block=dep.block)
        assert sent
        for payout in sent:
            tx = w3.eth.get_transaction(payout["transactionHash"])
            assert tx["to"] == pool.address  # a keeper's settle, not the report's own transaction
        watched = (network_dir / "watch" / "watch.log").read_text()
        assert "watch: MATCH" in watched, watched[-3000:]
        assert "MISMATCH" not in watched, watched[-3000:]
        # Two faulty nodes (k = 2; their signer keystores read from disk, as their operators could) sign
        # a revision of KE-NORTH's report with a value the decision never produced; node1 serves it with
        # the honest manifest and its own outbox posts it. The watcher, with no key of the network,
        # replays it, disputes it inside the window, and nothing pays on it.
        tampered = _post_tampered(network_dir, dep, "KE-NORTH")
        region, month = tampered.subject, tampered.epoch // 1000
        while not pool.events.DisputeFiled().get_logs(
            from_block=dep.block, argument_filters={"subject": region, "epoch": tampered.epoch}
        ):
            assert time.monotonic() - started < 480, (network_dir / "watch" / "watch.log").read_text()[-3000:]
            time.sleep(1)
        assert pool.functions.frozen(region, month).call()
        filed_at = time.monotonic()
        while time.monotonic() - filed_at < DEMO_LIVENESS_S + 15:  # the window and the keepers' turns pass
            time.sleep(1)
        assert pool.functions.frozen(region, month).call()
        late = pool.events.PayoutSent().get_logs(from_block=dep.block)
        assert [p for p in late if int(p["args"]["epoch"]) == tampered.epoch] == []
        assert len(late) == len(sent)
        watched = (network_dir / "watch" / "watch.log").read_text()
        assert "MISMATCH" in watched
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        out.close()
    log = (tmp_path / "run.log").read_text()
    assert "KE-NORTH: 3 of 3 nodes computed and signed" in log
    assert f"{breached}: disposition signed (approval) by Demo QA (simulated)" in log
    reader = PdfReader(report)
    text = " ".join(" ".join(p.extract_text() for p in reader.pages).split())
    assert len(reader.pages) >= 2
    assert "Verdict BREACH" in text
    assert "Demo QA (simulated) approval" in text
    assert voided_tx in text
    assert "ShipmentVoided" in text
    assert "BREACH detected" in log
    nodes = tmp_path / "data" / "network" / "nodes"
    for node in ("node1", "node2", "node3"):
        assert "Traceback" not in (nodes / node / "node.log").read_text(), node
    assert "Traceback" not in log
    assert "Traceback" not in watched
    # The loggers signed with their own keys (the void above came from them): the private keys are on the
    # simulated devices' side only, and every node holds the same public keys and no device secret.
    device_side = tmp_path / "data" / "network" / "demo-devices"
    pems = sorted(device_side.glob("*.pem"))
    assert len(pems) == 3
    assert all(p.stat().st_mode & 0o077 == 0 and b"PRIVATE KEY" in p.read_bytes() for p in pems)
    held = set()
    for node in ("node1", "node2", "node3"):
        with contextlib.closing(sqlite3.connect(nodes / node / "oracle.sqlite3")) as db:
            rows = db.execute(
                "SELECT d.device_id, d.auth, length(d.secret_ct), k.alg, k.fingerprint"
                " FROM devices d JOIN device_keys k ON k.device_id = d.device_id"
            ).fetchall()
        assert len(rows) == 3, rows
        assert {(auth, secret_len, alg) for _, auth, secret_len, alg, _ in rows} == {("key", 0, "EdDSA")}
        held.add(frozenset((device, fp) for device, _, _, _, fp in rows))
        node_files = [p for p in (nodes / node).rglob("*") if p.is_file() and p.suffix == ".pem"]
        assert not any(p.read_bytes() == pem.read_bytes() for p in node_files for pem in pems)
    assert len(held) == 1  # the same public key on every node
