"""A real Mosquitto broker as a child process, for ``make run`` and the tests.

:func:`start_mosquitto` derives a private configuration from ``deploy/mosquitto.conf`` (the one
production runs with), starts ``mosquitto`` on a loopback port and waits until it accepts TCP
connections. Only three things change in the derived file: the listener port is the chosen one and
is bound to 127.0.0.1, persistence goes into the caller's data directory, and ``user`` is the
current user (a broker started as root would otherwise switch to the ``mosquitto`` user and be
unable to write the persistence file into a directory it does not own). Every limit — queue
length, in-flight window, packet size, autosave — stays exactly as deployed.

Example::

    with start_mosquitto(data_dir=tmp) as broker:
        client.connect("127.0.0.1", broker.port)
        broker.restart()  # same port, same persistence: queued messages survive
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from oracle.broker_auth import (
    ADMIN_USER,
    WORKER_USER,
    BrokerAdmin,
    MqttLogin,
    initial_dynsec_config,
    new_password,
    read_password_file,
    write_secret_file,
)
from oracle.devstack.tls import TlsFiles, ensure_tls_files
from oracle.errors import ConfigError, ToolError

logger = logging.getLogger(__name__)

DEFAULT_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto.conf"
"""``deploy/mosquitto.conf`` of the source tree this module was loaded from."""

FALLBACK_BINARY = Path("/usr/sbin/mosquitto")
"""Debian and Ubuntu install the broker here, outside a normal user's PATH."""

INSTALL_HINT = (
    "install it with `apt-get install mosquitto` (Debian/Ubuntu), `brew install mosquitto` (macOS) "
    "or `dnf install mosquitto` (Fedora), or point ORACLE_MQTT_URL at an existing broker"
)

# Options the launcher owns. Everything else in the deployed file is copied verbatim.
_REPLACED = frozenset(
    {"listener", "persistence_location", "user", "pid_file", "log_dest", "plugin", "plugin_opt_config_file"}
)

_LOG_NAME = "mosquitto.log"
_CONF_NAME = "mosquitto.conf"
DYNSEC_FILE = "dynamic-security.json"
"""The dynamic-security plugin's users and roles, in the broker's data directory (the plugin rewrites it)."""
CREDENTIALS_DIR = "credentials"
"""``<data dir>/credentials/<user>``: the password of the launcher's worker and admin users (0600)."""

PLUGIN_NAME = "mosquitto_dynamic_security.so"
PLUGIN_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu"),
    Path("/usr/lib/aarch64-linux-gnu"),
    Path("/usr/lib"),
    Path("/usr/lib64"),
    Path("/usr/local/lib"),
    Path("/opt/homebrew/lib"),
)
"""Where Debian/Ubuntu (multiarch), the eclipse-mosquitto image, Fedora and Homebrew put the plugin."""


def find_dynsec_plugin(dirs: tuple[Path, ...] = PLUGIN_DIRS) -> Path:
    """Locate mosquitto's dynamic-security plugin (shipped with the broker since 2.0).

    Raises :class:`ToolError` with installation instructions when it is missing.
    """
    for d in dirs:
        if (d / PLUGIN_NAME).is_file():
            return d / PLUGIN_NAME
    raise ToolError(
        f"mosquitto's dynamic-security plugin {PLUGIN_NAME} was not found in "
        f"{', '.join(str(d) for d in dirs)}; it comes with mosquitto 2.0 or later: {INSTALL_HINT}"
    )


def find_mosquitto(*, search_path: str | None = None, fallback: Path = FALLBACK_BINARY) -> Path:
    """Locate the ``mosquitto`` executable on ``search_path`` (default ``$PATH``), else ``fallback``.

    Raises :class:`ToolError` with installation instructions when neither has it.
    """
    found = shutil.which("mosquitto", path=search_path)
    if found:
        return Path(found)
    if fallback.is_file() and os.access(fallback, os.X_OK):
        return fallback
    raise ToolError(f"the MQTT broker `mosquitto` was not found on PATH nor at {fallback}; {INSTALL_HINT}")


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a TCP port that is free on ``host`` right now (it may be taken later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def derive_config(
    base: str,
    *,
    port: int,
    data_dir: Path,
    plugin: Path | None = None,
    tls_port: int | None = None,
    tls: TlsFiles | None = None,
) -> str:
    """Rewrite the text of a mosquitto.conf for a private loopback broker.

    Keeps every line of ``base`` except the options the launcher owns (``listener``,
    ``persistence_location``, ``user``, ``pid_file``, ``log_dest``, and the dynamic-security
    ``plugin`` and its ``plugin_opt_config_file``), which it sets itself: the plugin (``plugin``,
    default :func:`find_dynsec_plugin`) with its file in ``data_dir``, only when ``base`` loads one.
    With ``tls_port`` and ``tls``, a second listener on 127.0.0.1 serves MQTT over TLS with that
    server certificate (what ``deploy/mosquitto.conf`` describes for devices outside the host).
    Raises :class:`ConfigError` when ``base`` declares more than one listener: the launcher runs
    exactly one, and silently dropping a TLS or websocket listener's options would apply them to
    the wrong one.
    """
    listeners = [ln for ln in base.splitlines() if _option(ln) == "listener"]
    if len(listeners) > 1:
        raise ConfigError(
            f"mosquitto config declares {len(listeners)} listeners; the local launcher runs exactly one "
            "(pass conf= with a single-listener file)"
        )
    out: list[str] = []
    placed_listener = False
    for line in base.splitlines():
        name = _option(line)
        if name in _REPLACED:
            if name == "listener":
                # Put ours where the original stood, so options that follow it (listener-scoped ones
                # such as max_connections or protocol) still attach to it.
                out.append(f"listener {port} 127.0.0.1")
                placed_listener = True
            elif name == "plugin":
                found = plugin if plugin is not None else find_dynsec_plugin()
                out.append(f"plugin {found}")
                out.append(f"plugin_opt_config_file {(data_dir / DYNSEC_FILE).resolve()}")
            continue
        out.append(line)
    if not placed_listener:
        out.insert(0, f"listener {port} 127.0.0.1")
    location = str(data_dir.resolve()).rstrip("/") + "/"
    if " " in location:
        # Mosquitto takes the rest of the line as the value, but a path with spaces is an easy
        # source of confusing failures; refuse it with a clear message instead.
        raise ConfigError(f"broker data directory must not contain spaces: {location!r}")
    out += [
        "",
        "# Set by oracle.devstack.broker for a private local broker:",
        f"persistence_location {location}",
        f"user {getpass.getuser()}",
        "log_dest stdout",
        "",
    ]
    if tls_port is not None and tls is not None:
        # Last, so that no option of the deployed file attaches to this listener by position.
        out += [
            "# The TLS listener (a throwaway CA made at run time in the data dir, see oracle.devstack.tls):",
            f"listener {tls_port} 127.0.0.1",
            f"certfile {tls.server_cert.resolve()}",
            f"keyfile {tls.server_key.resolve()}",
            "",
        ]
    return "\n".join(out)


def _option(line: str) -> str | None:
    stripped = line.strip()
    # Mosquitto only treats `#` in the first column as a comment; indented lines are options too.
    if not stripped or line.startswith("#"):
        return None
    return stripped.split(maxsplit=1)[0]


class BrokerProcess:
    """A running (or stopped) mosquitto child process bound to ``127.0.0.1:port``.

    ``stop()`` sends SIGTERM, which makes mosquitto save its persistence database before exiting;
    ``kill()`` sends SIGKILL, which loses whatever changed since the last autosave (a crash).
    ``restart()`` starts it again on the same port with the same configuration and data directory.
    """

    def __init__(
        self,
        *,
        binary: Path,
        conf_path: Path,
        data_dir: Path,
        port: int,
        tls_port: int | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = binary
        self.conf_path = conf_path
        self.data_dir = data_dir
        self.port = port
        self.tls_port = tls_port
        self.tls = tls
        self.host = "127.0.0.1"
        self.log_path = data_dir / _LOG_NAME
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._device_logins: dict[str, MqttLogin] = {}

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``, the form ``ORACLE_MQTT_URL`` expects."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        """``mqtts://127.0.0.1:TLS_PORT`` when started with ``tls=True``; clients trust ``ca_file``."""
        if self.tls_port is None:
            raise ConfigError("this broker was started without a TLS listener (start_mosquitto(tls=True))")
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        """The throwaway CA that signed the TLS listener's certificate (``ORACLE_MQTT_CA_FILE``)."""
        if self.tls is None:
            raise ConfigError("this broker was started without a TLS listener (start_mosquitto(tls=True))")
        return self.tls.ca_cert

    # --- logins (the broker refuses anonymous clients) -------------------------------------------------

    def password_file(self, username: str) -> Path:
        """The file holding the launcher-made password of ``username`` (the worker or the admin)."""
        return self.data_dir / CREDENTIALS_DIR / username

    def login(self, username: str) -> MqttLogin:
        return client_login(self.data_dir, username)

    @property
    def worker_login(self) -> MqttLogin:
        """The ingest workers' login (subscribe to telemetry, plain or shared; publish receipts)."""
        return self.login(WORKER_USER)

    @property
    def admin_login(self) -> MqttLogin:
        """The login that manages device users through the dynamic-security plugin."""
        return self.login(ADMIN_USER)

    def admin(self) -> BrokerAdmin:
        """A connected :class:`~oracle.broker_auth.BrokerAdmin` for this broker (close it after use)."""
        return BrokerAdmin(self.url, self.admin_login)

    def device_login(self, device_id: str) -> MqttLogin:
        """The broker login of ``device_id``: issued on first use (then kept by this object, in memory
        only), allowing exactly its own telemetry topic and its own receipts."""
        login = self._device_logins.get(device_id)
        if login is None:
            with self.admin() as admin:
                login = MqttLogin(device_id, admin.issue_device(device_id))
            self._device_logins[device_id] = login
        return login

    def revoke_device(self, device_id: str) -> bool:
        """Delete the device's broker user; the broker closes its connections at once."""
        self._device_logins.pop(device_id, None)
        with self.admin() as admin:
            return admin.revoke_device(device_id)

    def client_settings(self, username: str = WORKER_USER, *, tls: bool = False) -> dict[str, object]:
        """Settings (``Settings.model_copy(update=...)``) that make a node's clients use this broker as
        ``username`` (the worker by default) and manage devices as its admin; with ``tls``, through the
        TLS listener, trusting the throwaway CA."""
        if not tls:
            return client_settings(self.data_dir, self.url, username)
        return client_settings(self.data_dir, self.tls_url, username) | {"mqtt_ca_file": self.ca_file}

    def client_env(self, username: str = WORKER_USER, *, tls: bool = False) -> dict[str, str]:
        """The same as ``ORACLE_*`` environment variables, for child processes."""
        settings = self.client_settings(username, tls=tls)
        return {f"ORACLE_{k.upper()}": str(v) for k, v in settings.items()}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts TCP connections.

        Raises :class:`ToolError` (with the tail of the broker's log) if it exits early or is not
        accepting connections within ``timeout`` seconds; the process is stopped in that case.
        """
        if self.running:
            return
        if _accepts(self.host, self.port):
            # Without this check the readiness probe below would mistake the other program for us.
            raise ToolError(f"port {self.port} on {self.host} is already in use by another program")
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in `make run` reaches the service, which then stops the
            # broker in order instead of the terminal killing both at once.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._close_log()
                self._proc = None
                raise ToolError(
                    f"mosquitto exited with status {code} while starting on port {self.port}: "
                    f"{self.log_tail()}"
                )
            if _accepts(self.host, self.port) and (
                self.tls_port is None or _accepts(self.host, self.tls_port)
            ):
                logger.info("mosquitto listening on %s (pid %s)", self.url, self._proc.pid)
                _RUNNING[self.url] = self
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ToolError(
                    f"mosquitto did not accept connections on port {self.port} within {timeout:.0f} s: "
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: the persistence database is saved); SIGKILL after ``timeout`` s."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would: changes since the last autosave are lost."""
        self._signal_and_wait(signal.SIGKILL, 5.0)

    def restart(self, *, timeout: float = 10.0) -> None:
        """Stop gracefully and start again on the same port with the same config and data."""
        self.stop(timeout=timeout)
        self.start(timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the broker wrote, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no broker log)"
        tail = text.strip().splitlines()[-lines:]
        return " | ".join(tail) if tail else "(broker log is empty)"

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if _RUNNING.get(self.url) is self:
            del _RUNNING[self.url]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("mosquitto (pid %s) ignored %s; killing it", proc.pid, sig.name)
                proc.kill()
                proc.wait(timeout=5.0)
        self._proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"BrokerProcess({self.url}, {state}, data_dir={self.data_dir})"


def client_settings(data_dir: Path, url: str, username: str = WORKER_USER) -> dict[str, object]:
    """The settings of a client of the launcher's broker in ``data_dir`` at ``url`` (maybe started by
    another process, e.g. ``oracle run``): its URL, ``username``'s login and the admin's login."""
    return {
        "mqtt_url": url,
        "mqtt_username": username,
        "mqtt_password_file": data_dir / CREDENTIALS_DIR / username,
        "mqtt_admin_username": ADMIN_USER,
        "mqtt_admin_password_file": data_dir / CREDENTIALS_DIR / ADMIN_USER,
    }


def client_login(data_dir: Path, username: str) -> MqttLogin:
    """``username``'s login (the worker or the admin) of the launcher's broker in ``data_dir``."""
    return MqttLogin(
        username, read_password_file(data_dir / CREDENTIALS_DIR / username, f"broker user {username}")
    )


def client_env(data_dir: Path, url: str, username: str = WORKER_USER) -> dict[str, str]:
    """:func:`client_settings` as ``ORACLE_*`` environment variables, for child processes."""
    return {f"ORACLE_{k.upper()}": str(v) for k, v in client_settings(data_dir, url, username).items()}


_RUNNING: dict[str, BrokerProcess] = {}


def running_broker(url: str) -> BrokerProcess | None:
    """The broker this process started and still runs at ``url`` (its logins are on disk), or None."""
    return _RUNNING.get(url)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_mosquitto(
    *,
    data_dir: Path,
    port: int | None = None,
    conf: Path | None = None,
    binary: Path | None = None,
    timeout: float = 10.0,
    tls: bool = False,
) -> BrokerProcess:
    """Start a real mosquitto on ``127.0.0.1`` and return once it accepts connections.

    ``data_dir`` receives the derived ``mosquitto.conf``, the broker's log (``mosquitto.log``) and its
    persistence database; it is created if missing. ``port`` defaults to a free port (retried a few
    times if another process takes it in between). ``conf`` defaults to ``deploy/mosquitto.conf``;
    ``binary`` defaults to :func:`find_mosquitto`. The caller owns the process: use the result as a
    context manager or call ``stop()``. ``tls=True`` adds a TLS listener on another free port
    (``tls_url``), its certificate signed by a CA made into ``data_dir/tls`` (``ca_file``).

    Raises :class:`ToolError` when mosquitto is missing or fails to start, :class:`ConfigError`
    when the config file is missing or unusable.
    """
    exe = binary if binary is not None else find_mosquitto()
    conf_file = conf if conf is not None else DEFAULT_CONF
    try:
        base = conf_file.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read mosquitto config {conf_file}: {e.strerror}") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    ensure_dynsec_file(data_dir)
    conf_path = data_dir / _CONF_NAME
    attempts = 1 if port is not None else 3
    tls_files = ensure_tls_files(data_dir / "tls") if tls else None
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        tls_port = free_port() if tls else None
        conf_path.write_text(
            derive_config(base, port=chosen, data_dir=data_dir, tls_port=tls_port, tls=tls_files)
        )
        broker = BrokerProcess(
            binary=exe, conf_path=conf_path, data_dir=data_dir, port=chosen, tls_port=tls_port, tls=tls_files
        )
        try:
            broker.start(timeout=timeout)
        except ToolError as e:
            # mosquitto logs "Address already in use" when it loses the race for the port.
            if attempt == attempts or "already in use" not in str(e):
                raise
            logger.info("port %s was taken before mosquitto bound it; trying another", chosen)
            continue
        return broker
    raise AssertionError("unreachable: the last attempt either returns or raises")


def ensure_dynsec_file(data_dir: Path, *, credentials: Path | None = None) -> None:
    """On a first start, write the dynamic-security plugin's file with the worker and admin users and
    their passwords into ``credentials`` (default ``<data_dir>/credentials/``, files 0600); later starts
    reuse both (the plugin keeps the device users it was given in the same file)."""
    dynsec = data_dir / DYNSEC_FILE
    if dynsec.exists():
        return
    creds = credentials if credentials is not None else data_dir / CREDENTIALS_DIR
    passwords = {WORKER_USER: new_password(), ADMIN_USER: new_password()}
    for user, password in passwords.items():
        write_secret_file(creds / user, password + "\n")
    config = initial_dynsec_config(
        admin_password=passwords[ADMIN_USER], worker_password=passwords[WORKER_USER]
    )
    write_secret_file(dynsec, json.dumps(config, indent=2) + "\n")
