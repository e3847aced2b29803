"""``oracle watch`` and the public data it needs, on a real anvil and a real node API (uvicorn).

An honest drought report is posted; then a faulty network posts a tampered revision of it (same inputs
and manifest, another value, signed by k keys). The watcher, holding no key, replays both from the
node's public endpoints: the honest one matches, the tampered one is a mismatch whose evidence names
the first mismatching step. The endpoints need no API key, check their input and are rate-limited.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import update

from oracle.api.app import create_app
from oracle.api.routes import public
from oracle.api.telemetry import RateLimit
from oracle.attest import attest
from oracle.chain.anvil import free_port
from oracle.chain.outbox import OutboxPoster
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment
from oracle.decisions.drought import evaluate_drought
from oracle.device_keys import public_pem
from oracle.storage.blobs import cid_for
from oracle.storage.tables import DeviceKey
from oracle.verify.watch import MATCH, UNAVAILABLE, Watcher
from tests.coldchain.helpers import Fleet, day_ago, temperatures
from tests.drought.world import PERIOD, build
from tests.fixtures.chain import ChainKit
from tests.outbox.helpers import local_signers
from tests.verify.test_verify import post_and_settle

pytestmark = pytest.mark.chain


@dataclasses.dataclass
class Node:
    ctx: Context
    url: str
    honest_tx: str
    tampered_tx: str
    manifest: str


def node_context(data: Path) -> Context:
    """A node's context over SQLite in ``data`` (its content store there too)."""
    return open_context(
        Settings(
            env="dev",
            data_dir=data,
            database_url=f"sqlite:///{data / 'oracle.sqlite3'}",
            _env_file=None,  # type: ignore[call-arg]
        )
    )


def _serve(ctx: Context) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start within 15 s"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def node(chain: ChainKit, tmp_path: Path) -> Iterator[Node]:
    data = tmp_path / "data"
    ctx = node_context(data)
    build(ctx.sessions, ctx.blobs, tmp_path)
    outcome = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
    assert outcome.report is not None
    honest = post_and_settle(chain, ctx.sessions, outcome)
    # A faulty network: the same inputs and manifest, a value the decision never produced, k signatures.
    tampered = dataclasses.replace(
        outcome.report, value=min(outcome.report.value + 700_000, 5_000_000), epoch=outcome.report.epoch + 1
    )
    attest(
        ctx.sessions,
        tampered,
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
        subject_name="dry",
        detail={"manifest_cid": outcome.manifest_cid},
    )
    OutboxPoster(ctx.sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    tampered_tx = chain.router.events.ReportAccepted().get_logs(from_block=chain.deployment.block)[-1][
        "transactionHash"
    ]
    server, thread, url = _serve(ctx)
    assert honest.tx_hash is not None
    yield Node(ctx, url, honest.tx_hash, "0x" + bytes(tampered_tx).hex(), outcome.manifest_cid)
    server.should_exit = True
    thread.join(timeout=10)
    ctx.close()


def test_the_watcher_matches_the_honest_report_and_gives_evidence_against_the_tampered_one(
    node: Node, chain: ChainKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = Watcher(
        chain.w3,
        router=chain.router.address,
        nodes=[node.url],
        state_path=tmp_path / "watch" / "state.json",
        evidence_dir=tmp_path / "watch" / "evidence",
        from_block=chain.deployment.block,
    )
    try:
        results = {r.tx_hash: r for r in watcher.poll()}
    finally:
        watcher.close()
    assert set(results) == {node.honest_tx, node.tampered_tx}
    honest, bad = results[node.honest_tx], results[node.tampered_tx]
    assert (honest.status, honest.manifest_cid) == (MATCH, node.manifest)
    assert bad.status == "MISMATCH"
    assert bad.first_mismatch is not None
    assert "report" in bad.first_mismatch  # every step reproduces; the report's value does not
    evidence = (tmp_path / "watch" / "evidence" / str(bad.evidence_cid)).read_bytes()
    assert cid_for(evidence) == bad.evidence_cid
    doc = json.loads(evidence)
    assert doc["tx_hash"] == node.tampered_tx
    assert doc["replays"][0]["first_mismatch"] == bad.first_mismatch
    text = watcher.metrics.registry.get_sample_value(
        "oracle_watch_reports_checked_total", {"result": "MATCH"}
    )
    assert text == 1.0
    assert watcher.metrics.registry.get_sample_value("oracle_watch_disputes_total") == 1.0
    # The cursor was saved: a new watcher on the same state has nothing left to check.
    again = Watcher(
        chain.w3,
        router=chain.router.address,
        nodes=[node.url],
        state_path=tmp_path / "watch" / "state.json",
        evidence_dir=tmp_path / "watch" / "evidence",
    )
    try:
        assert again.poll() == []
    finally:
        again.close()
    # The data it used needs no API key; bad requests get problems, and the endpoints are limited.
    _public_endpoints_need_no_key_and_refuse_bad_requests(node, monkeypatch)


def test_withheld_data_is_unavailable_not_a_match_and_is_retried(
    node: Node, chain: ChainKit, tmp_path: Path
) -> None:
    watcher = Watcher(
        chain.w3,
        router=chain.router.address,
        nodes=[f"http://127.0.0.1:{free_port()}"],  # nobody answers
        state_path=tmp_path / "state.json",
        evidence_dir=tmp_path / "evidence",
        from_block=chain.deployment.block,
    )
    try:
        assert {r.status for r in watcher.poll()} == {UNAVAILABLE}
        assert set(watcher.state.retry) == {node.honest_tx, node.tampered_tx}
        # The node comes back but rate-limits this watcher to a trickle: inputs it cannot fetch are no
        # evidence against a report, so still nothing is called a mismatch.
        watcher.source.nodes = [node.url]
        watcher.nodes = [node.url]
        watcher.source.RETRIES_429 = 0
        node.ctx.extras[public._LIMIT_KEY] = RateLimit(rate_per_s=0.001, burst=20)
        assert {r.status for r in watcher.poll()} == {UNAVAILABLE}
        node.ctx.extras.pop(public._LIMIT_KEY)  # the limit lifts
        statuses = {r.tx_hash: r.status for r in watcher.poll()}
        assert statuses == {node.honest_tx: MATCH, node.tampered_tx: "MISMATCH"}
        assert watcher.state.retry == {}
    finally:
        watcher.close()


def test_oracle_watch_once_exits_1_on_a_mismatch(node: Node, chain: ChainKit, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from oracle.cli import main; main()",
            "watch",
            "--rpc-url",
            chain.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
            "--router",
            chain.router.address,
            "--node",
            node.url,
            "--state",
            str(tmp_path / "s.json"),
            "--evidence",
            str(tmp_path / "ev"),
            "--from-block",
            str(chain.deployment.block),
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "MISMATCH" in done.stderr
    assert f"tx={node.tampered_tx}" in done.stderr
    assert len(list((tmp_path / "ev").iterdir())) == 1


def _public_endpoints_need_no_key_and_refuse_bad_requests(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = httpx.get(f"{node.url}/v1/blobs/{node.manifest}", timeout=10)
    assert r.status_code == 200
    assert cid_for(r.content) == node.manifest
    assert r.headers["cache-control"].startswith("public")
    assert httpx.get(f"{node.url}/v1/blobs/not-a-cid", timeout=10).status_code == 422
    missing = cid_for(b"nobody stored this")
    gone = httpx.get(f"{node.url}/v1/blobs/{missing}", timeout=10)
    assert (gone.status_code, gone.headers["content-type"]) == (404, "application/problem+json")
    monkeypatch.setattr(public, "MAX_BLOB_BYTES", 10)
    big = httpx.get(f"{node.url}/v1/blobs/{node.manifest}", timeout=10)
    assert (big.status_code, big.json()["reason"]) == (413, "too_large")
    monkeypatch.undo()
    assert httpx.get(f"{node.url}/v1/reports/0x12/1/manifest", timeout=10).status_code == 422
    unknown = "0x" + "ab" * 32
    assert httpx.get(f"{node.url}/v1/reports/{unknown}/1/manifest", timeout=10).status_code == 404
    node.ctx.extras[public._LIMIT_KEY] = RateLimit(rate_per_s=0.01, burst=2)
    codes = [httpx.get(f"{node.url}/v1/blobs/{node.manifest}", timeout=10).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_the_watcher_checks_each_telemetry_message_against_its_devices_public_key(
    chain: ChainKit, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ctx = node_context(data)
    fleet = Fleet(ctx.sessions, ctx.blobs)
    start = day_ago()
    fleet.add("logger-es", "SHP-W", start_s=start, key=ec.generate_private_key(ec.SECP256R1()))
    fleet.add("logger-ed", "SHP-W", start_s=start, key=ed25519.Ed25519PrivateKey.generate())
    temps = temperatures(6, excursion=(2, 2, 46.0))
    for device in ("logger-es", "logger-ed"):
        assert fleet.publish(device, temps, start_s=start, batch=12) == len(temps)
    outcome = evaluate_shipment(
        ctx.sessions, ctx.blobs, shipment_id="SHP-W", terms=ShipmentTerms(profile="refrigerated")
    )
    assert outcome.report is not None
    attest(
        ctx.sessions,
        outcome.report,
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
        subject_name="SHP-W",
        detail={"manifest_cid": outcome.manifest_cid},
    )
    OutboxPoster(ctx.sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    server, thread, url = _serve(ctx)
    try:
        report = outcome.report
        served = httpx.get(f"{url}/v1/reports/0x{report.subject.hex()}/{report.epoch}/manifest", timeout=10)
        keys = served.json()["device_keys"]
        assert {d: k["alg"] for d, k in keys.items()} == {"logger-es": "ES256", "logger-ed": "EdDSA"}
        assert "PRIVATE" not in served.text

        def watch(state: str) -> list[object]:
            w = Watcher(
                chain.w3,
                router=chain.router.address,
                nodes=[url],
                state_path=tmp_path / state,
                evidence_dir=tmp_path / "evidence",
                from_block=chain.deployment.block,
            )
            try:
                return list(w.poll())
            finally:
                w.close()

        (honest,) = watch("a.json")
        assert honest.status == MATCH  # type: ignore[attr-defined]
        # The node's operator swaps logger-es's registered key for one of their own (to pass off forged
        # readings): the watcher, checking every message against the key served, names the device.
        other = public_pem(ec.generate_private_key(ec.SECP256R1())).decode()
        with ctx.sessions() as s:
            s.execute(update(DeviceKey).where(DeviceKey.device_id == "logger-es").values(public_key=other))
            s.commit()
        (forged,) = watch("b.json")
        assert forged.status == "MISMATCH"  # type: ignore[attr-defined]
        assert forged.first_mismatch == "signatures logger-es"  # type: ignore[attr-defined]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.close()
