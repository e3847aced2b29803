"""Fixtures for the signer: a real ``keygen`` and real ``serve`` processes on free loopback ports."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from oracle.reports import Report, ReportKind, subject_id

REPO = Path(__file__).resolve().parents[2]
CHAIN_ID = 31337
ROUTER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_ROUTER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


def signer_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a signer process: no ORACLE_* leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env.update(PYTHONPATH=str(REPO), ORACLE_ENV="dev", ORACLE_DATA_DIR=str(data_dir), ORACLE_LOG_LEVEL="INFO")
    env.update(extra)
    return env


def run_cli(
    args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oracle.signer.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class SignerKeys:
    """A keygen'd signer directory and, for assertions only, the secrets it holds."""

    dir: Path
    address: str
    private_key_hex: str
    passphrase: str
    token: str
    keygen_output: str


def make_keys(base: Path) -> SignerKeys:
    out = base / "signer"
    res = run_cli(["keygen", "--out", str(out), "--dev"], cwd=base, env=signer_env(base))
    assert res.returncode == 0, res.stderr
    passphrase = (out / "passphrase").read_text().strip()
    key = Account.decrypt(json.loads((out / "keystore.json").read_text()), passphrase)
    return SignerKeys(
        dir=out,
        address=res.stdout.strip(),
        private_key_hex=bytes(key).hex(),
        passphrase=passphrase,
        token=(out / "token").read_text().strip(),
        keygen_output=res.stdout + res.stderr,
    )


@dataclass
class SignerProcess:
    """``python -m oracle.signer.cli serve`` as a child process; logs go to files for inspection."""

    keys: SignerKeys
    workdir: Path
    extra_args: list[str] = field(default_factory=list)
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    runs: int = 0

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"serve-{self.runs}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"serve-{self.runs}.err"

    def start(self, timeout: float = 30.0) -> SignerProcess:
        self.runs += 1
        url_file = self.workdir / "url"
        args = ["serve", "--dir", str(self.keys.dir), "--port", "0", "--chain-id", str(CHAIN_ID)]
        args += ["--url-file", str(url_file)]
        args += ["--router", ROUTER, *self.extra_args]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "oracle.signer.cli", *args],
                cwd=self.workdir,
                env=signer_env(self.workdir, **self.env_extra),
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"signer exited with {self.proc.returncode}: {self.stderr_path.read_text()}"
                )
            if url_file.exists():
                self.url = url_file.read_text().strip()
                try:
                    if httpx.get(f"{self.url}/v1/health", timeout=1.0, trust_env=False).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"signer did not start within {timeout}s: {self.stderr_path.read_text()}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def logs(self) -> str:
        return "".join(
            (self.workdir / f"serve-{i}.{ext}").read_text(errors="replace")
            for i in range(1, self.runs + 1)
            for ext in ("out", "err")
        )


def copy_keys(keys: SignerKeys, dest: Path) -> SignerKeys:
    """The same key in a fresh signer directory (no epoch memory), without paying for keygen again."""
    dest.mkdir(mode=0o700)
    for name in ("keystore.json", "passphrase", "token"):
        shutil.copy2(keys.dir / name, dest / name)
    return dataclasses.replace(keys, dir=dest)


@pytest.fixture(scope="session")
def signer_keys(tmp_path_factory: pytest.TempPathFactory) -> SignerKeys:
    return make_keys(tmp_path_factory.mktemp("signer-keys"))


@pytest.fixture(scope="module")
def signer_process(
    signer_keys: SignerKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SignerProcess]:
    """One serving signer per module: per-subject burst 5 (slow refill), generous global bucket."""
    proc = SignerProcess(
        keys=signer_keys,
        workdir=tmp_path_factory.mktemp("signer-run"),
        extra_args=["--subject-burst", "5", "--subject-rate", "0.001"],
    )
    proc.start()
    yield proc
    proc.stop()


_counter = iter(range(1, 10**9))


def fresh_subject(prefix: str = "test") -> bytes:
    """A subject no other test has used in this session (so epochs and buckets start clean)."""
    return subject_id("region", f"{prefix}-{os.getpid()}-{next(_counter)}")


def make_report(
    subject: bytes,
    epoch: int,
    *,
    kind: ReportKind = ReportKind.DROUGHT_SEVERITY,
    value: int = 2_500_000,
    observed_at: int = 1_700_000_000,
) -> Report:
    return Report(
        subject=subject,
        kind=kind,
        value=value,
        epoch=epoch,
        observed_at=observed_at,
        inputs_root=b"\x11" * 32,
        model_id=b"\x22" * 32,
    )
