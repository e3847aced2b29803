"""The operator's chain commands end to end: oracle chain up, signer serve, report post, outbox pump and
status, chain down — separate processes, as a person would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from web3 import Web3

from oracle.reports import subject_id


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env["ORACLE_DATA_DIR"] = str(tmp_path / "data")
    return env


def _oracle(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from oracle.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=240,
        check=False,
    )


@pytest.mark.chain
def test_chain_up_post_report_pump_and_down(tmp_path: Path) -> None:
    up = _oracle(tmp_path, "chain", "up")
    assert up.returncode == 0, up.stderr
    assert "OracleRouter" in up.stdout
    assert "chainlink job 0x" in up.stdout
    record = json.loads((tmp_path / "data" / "deployment.json").read_text())
    router = record["addresses"]["OracleRouter"]
    rpc_url = (tmp_path / "data" / "chain" / "rpc_url").read_text().strip()
    again = _oracle(tmp_path, "chain", "up")  # idempotent: the running chain and its contracts are reused
    assert again.returncode == 0, again.stderr
    assert (
        json.loads((tmp_path / "data" / "deployment.json").read_text())["addresses"]["OracleRouter"] == router
    )

    signer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oracle.signer.cli",
            "serve",
            "--chain-id",
            str(record["chainId"]),
            "--router",
            router,
            "--dir",
            str(tmp_path / "data" / "signer"),
            "--port",
            "0",
        ],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "data" / "signer" / "url").exists():
            assert signer.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.2)
        posted = _oracle(
            tmp_path, "report", "post", "--subject", "region:KE-01", "--kind", "drought", "--value", "2.5"
        )
        assert posted.returncode == 0, posted.stderr
        assert "queued report:0x" in posted.stdout
        refused = _oracle(
            tmp_path, "report", "post", "--subject", "region:KE-01", "--kind", "drought", "--value", "9"
        )
        assert refused.returncode == 1  # out of range: the signer (and the router) would refuse it
        assert "Traceback" not in refused.stderr
    finally:
        signer.terminate()
        signer.wait(timeout=10)

    pumped = _oracle(tmp_path, "outbox", "pump", "--until-settled", "--timeout", "120")
    assert pumped.returncode == 0, pumped.stderr
    status = _oracle(tmp_path, "outbox", "status")
    assert "confirmed  1" in status.stdout
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    abi = json.loads(Path("contracts/build/OracleRouter.json").read_text())["abi"]
    latest = w3.eth.contract(address=router, abi=abi).functions.latest(subject_id("region", "KE-01")).call()
    assert 2_500_000 in list(latest)

    down = _oracle(tmp_path, "chain", "down")
    assert down.returncode == 0
    assert "anvil stopped" in down.stdout
    assert not (tmp_path / "data" / "chain" / "rpc_url").exists()
    assert _oracle(tmp_path, "chain", "down").stdout.strip() == "no local anvil was running"
