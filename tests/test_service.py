"""`oracle run` on embedded defaults: a cold start serves /healthz within 60 s, every dependency is
real (anvil with contracts, mosquitto, the signer child), and a stop leaves no child behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


@pytest.mark.chain
@pytest.mark.mqtt
def test_run_serves_health_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env |= {"ORACLE_DATA_DIR": str(tmp_path / "data"), "ORACLE_API_PORT": str(port)}
    log = (tmp_path / "run.log").open("w")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from oracle.cli import main; main()", "run", "--single", "--no-demo"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            try:
                r = httpx.get(base + "/healthz", timeout=1)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() - started < 60, "no /healthz within 60 s of a cold start"
            time.sleep(0.25)
        assert r.json()["status"] == "ok"
        ready = httpx.get(base + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert [name for name, c in checks.items() if c["ok"]] == ["database", "chain", "broker"]
        assert "python_info" in httpx.get(base + "/metrics", timeout=5).text

        record = json.loads((tmp_path / "data" / "deployment.json").read_text())
        assert {"OracleRouter", "DroughtInsurancePool", "ColdChainEscrow"} <= set(record["addresses"])
        children = _children(proc.pid)
        assert len(children) >= 3  # anvil, mosquitto, signer
        # The CLI in this data dir (`oracle verify`, `oracle outbox pump`) finds the chain this run started.
        from oracle.config import Settings
        from oracle.devstack.localchain import running_chain_url

        in_data_dir = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
        assert running_chain_url(in_data_dir) is not None
        # The API process never holds the signer key: only the signer child opened the keystore.
        assert (tmp_path / "data" / "signer" / "keystore.json").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()
    assert "Traceback" not in (tmp_path / "run.log").read_text()
    assert running_chain_url(in_data_dir) is None  # gone with the run
    time.sleep(0.5)
    for child in children:
        assert (
            not Path(f"/proc/{child}").exists()
            or "zombie" in Path(f"/proc/{child}/status").read_text().lower()
        )


def test_worker_stop_waits_for_the_step_in_progress() -> None:
    """The service stops the chain, broker and signer right after the workers: a step still running
    then failed against them (the Chainlink follower's tracebacks at shutdown, issue 16 item 12)."""
    from oracle.service import Worker

    entered, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def step() -> None:
        entered.set()
        release.wait(5)
        finished.append(True)

    worker = Worker("slow", step, 0.01)
    worker.start()
    assert entered.wait(5)
    threading.Timer(0.3, release.set).start()
    worker.stop()
    assert finished == [True]
    assert not worker.is_alive()


@pytest.mark.chain
@pytest.mark.mqtt
def test_ctrl_c_stops_the_workers_before_the_chain_without_tracebacks(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group; with the demo running (Chainlink follower,
    outbox, scheduler jobs, ingest worker, model warm-up) the shutdown logs no traceback and exits 0."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env |= {"ORACLE_DATA_DIR": str(tmp_path / "data"), "ORACLE_API_PORT": str(port)}
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from oracle.cli import main; main()", "run", "--single"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
        try:
            started = time.monotonic()
            while "outbox confirmed" not in log_path.read_text():
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() - started < 180, "the demo posted nothing within 180 s"
                time.sleep(0.5)
            assert (tmp_path / "data" / "chain" / "chainlink-jobs.json").exists()  # the follower runs
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
    text = log_path.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    assert "oracle stopped" in text


@pytest.mark.chain
@pytest.mark.mqtt
def test_a_service_killed_outright_does_not_leave_its_signer_running(tmp_path: Path) -> None:
    """The signer runs in a session of its own (Ctrl-C must reach the service first), so a SIGKILLed
    service would orphan it with the key loaded; it notices its parent is gone and stops."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env |= {"ORACLE_DATA_DIR": str(tmp_path / "data"), "ORACLE_API_PORT": str(port)}
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from oracle.cli import main; main()", "run", "--single", "--no-demo"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    started = time.monotonic()
    others: list[int] = []
    try:
        while True:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() - started < 90, "no /healthz"
            time.sleep(0.25)
        children = _children(proc.pid)
        signers = [
            p
            for p in children
            if "oracle.signer.cli" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
        ]
        assert len(signers) == 1, children
        others = [p for p in children if p not in signers]
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{signers[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{signers[0]}").exists(), "the signer outlived its service"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in others:  # anvil and mosquitto, orphaned by the SIGKILL: this test's own mess
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)
        log.close()
