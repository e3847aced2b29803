"""Start and stop a local anvil chain as a child process.

anvil's default mnemonic ("test test … junk") funds ten dev accounts with 10,000 ETH each; chain id 31337.
With ``state_file`` anvil loads that state at start and dumps it on stop, so a chain survives restarts.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from oracle.errors import ToolError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_CHAIN_ID = 31337


def find_anvil() -> str:
    """The anvil binary: ``ORACLE_ANVIL_BIN``, then the one installed under ``node_modules`` (the native
    binary of ``@foundry-rs/anvil-<os>-<arch>`` when present, else ``node_modules/.bin/anvil``), then PATH.

    Raises ``ToolError`` when none exists.
    """
    override = os.environ.get("ORACLE_ANVIL_BIN")
    if override:
        if not Path(override).is_file():
            raise ToolError(f"ORACLE_ANVIL_BIN={override} does not exist")
        return override
    modules = REPO_ROOT / "node_modules"
    # Prefer the native binary the npm package ships: its node wrapper (.bin/anvil) exits on SIGINT
    # without waiting for anvil, which may still be dumping --state and holding the port.
    native = sorted(modules.glob(f"@foundry-rs/anvil-{_platform_tag()}/bin/anvil"))
    if native and os.access(native[0], os.X_OK):
        return str(native[0])
    local = modules / ".bin" / "anvil"
    if local.is_file():
        return str(local)
    found = shutil.which("anvil")
    if found:
        return found
    raise ToolError(
        "anvil not found: run `npm ci` in the repository root (installs node_modules/.bin/anvil), "
        "put anvil on PATH, or set ORACLE_ANVIL_BIN"
    )


def _platform_tag() -> str:
    system = platform.system().lower()
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"{system}-{machine}"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class AnvilProcess:
    """A running anvil. Use as a context manager or call ``stop()``."""

    def __init__(self, proc: subprocess.Popen[bytes], *, port: int, log_path: Path) -> None:
        self._proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop anvil with SIGINT so it dumps ``--state`` before exiting; kill it if it hangs.

        Removes anvil's log file; idempotent.
        """
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=timeout)
        self._wait_port_closed(timeout)
        self.log_path.unlink(missing_ok=True)

    def _wait_port_closed(self, timeout: float) -> None:
        # A wrapper process may exit before the anvil it started; the port closing is the real end.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)

    def __enter__(self) -> AnvilProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_anvil(
    *,
    port: int | None = None,
    state_file: Path | None = None,
    block_time: float | None = None,
    chain_id: int = DEFAULT_CHAIN_ID,
    startup_timeout: float = 15.0,
) -> AnvilProcess:
    """Start anvil on ``port`` (a free one when None) and wait until its JSON-RPC answers.

    ``block_time`` in seconds switches from instant mining to interval mining. Raises ``ToolError`` when
    anvil is missing, exits early or does not answer within ``startup_timeout`` seconds.
    """
    binary = find_anvil()
    attempts = 1 if port is not None else 3
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        args = [binary, "--host", "127.0.0.1", "--port", str(chosen), "--chain-id", str(chain_id)]
        args += ["--mnemonic", DEV_MNEMONIC]
        # Anvil keeps recent states in memory and writes older ones under ~/.foundry/anvil/tmp, a
        # directory per process that nothing removes: one test session wrote 32-44 GB there, and the
        # leftovers of a few runs filled the disk (stop 20's CI). Nothing here reads state that old.
        args += ["--max-persisted-states", "0"]
        if state_file is not None:
            args += ["--state", str(state_file)]
        if block_time is not None:
            args += ["--block-time", str(block_time)]
        log = Path(tempfile.mkstemp(prefix=f"anvil-{chosen}-", suffix=".log")[1])
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        anvil = AnvilProcess(proc, port=chosen, log_path=log)
        if _wait_ready(anvil, startup_timeout):
            return anvil
        last_error = log.read_text(errors="replace")[-2000:]
        anvil.stop(timeout=2.0)
    raise ToolError(f"anvil did not start (args: {' '.join(args[1:])}): {last_error.strip()}")


def _wait_ready(anvil: AnvilProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not anvil.running:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if client.post(anvil.url, json=body).status_code == 200:
                    return True
            time.sleep(0.05)
    return False


def dev_accounts(count: int = 10) -> list[LocalAccount]:
    """anvil's default dev accounts (public test keys from the well-known mnemonic; never use elsewhere)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]
