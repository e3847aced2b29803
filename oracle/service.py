"""``oracle run``: the whole service in one process tree, on embedded defaults unless configured.

Start order: data dir and database schema → chain (configured RPC, or a local anvil with the contracts
deployed) → MQTT broker (configured, or a local mosquitto child) → signer (configured URL, or a local
signer child process: the key never enters this process) → background workers → the HTTP API.
Everything started here is stopped on exit, in reverse order: the workers (demo, ingest worker,
model warm-up, scheduler jobs, Chainlink follower), each waited for, before the signer, the broker and
the chain they use. A configured database, chain or broker that does not answer stops start-up with one
line naming the setting (:func:`check_configured_endpoints`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from ingest.telemetry.pipeline import BatchOutcome, IncomingMessage
from ingest.telemetry.pipeline import TelemetryIngest as TelemetryIngestBase
from oracle.config import Settings
from oracle.devices import Kek

if TYPE_CHECKING:
    from oracle.chain.deploy import Deployment
    from oracle.chainlink.requests import OracleRequestFollower
from oracle.context import Context, check_database_setting, open_context
from oracle.errors import ConfigError, ToolError

log = logging.getLogger(__name__)


#: Seconds a start-up probe of a configured chain, broker or database waits for an answer.
PROBE_TIMEOUT = 5.0


def _shown(url: str) -> str:
    """``url`` without its password (RPC and broker URLs may carry credentials)."""
    u = urlsplit(url)
    if u.password is None:
        return url
    netloc = f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
    return urlunsplit(u._replace(netloc=netloc))


def check_configured_endpoints(settings: Settings) -> None:
    """Before anything starts: the database, and the chain and broker when the settings name them, must
    answer. :raises ConfigError: one line naming the setting, what was tried and why."""
    check_database_setting(settings)
    if settings.chain_rpc_url:
        _check_chain(settings.chain_rpc_url)
    if settings.mqtt_url:
        _check_broker(settings.mqtt_url)


def _check_chain(url: str) -> None:
    import httpx

    query = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    try:
        answer = httpx.post(url, json=query, timeout=PROBE_TIMEOUT)
        answer.raise_for_status()
        int(answer.json()["result"], 16)
    except httpx.HTTPStatusError as e:
        raise ConfigError(
            f"ORACLE_CHAIN_RPC_URL: eth_chainId at {_shown(url)} answered HTTP {e.response.status_code}"
        ) from None
    except httpx.HTTPError as e:
        reason = " ".join(str(e).split()) or e.__class__.__name__
        raise ConfigError(f"ORACLE_CHAIN_RPC_URL: no chain answers at {_shown(url)} ({reason})") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"ORACLE_CHAIN_RPC_URL: {_shown(url)} answered eth_chainId with something other than a chain id"
        ) from None


def _check_broker(url: str) -> None:
    import socket

    u = urlsplit(url)
    host, port = u.hostname or "localhost", u.port or (8883 if u.scheme == "mqtts" else 1883)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            pass
    except OSError as e:
        reason = e.strerror or e.__class__.__name__
        raise ConfigError(f"ORACLE_MQTT_URL: no broker answers at {_shown(url)} ({reason})") from None


@contextlib.contextmanager
def local_chain(settings: Settings) -> Iterator[str]:
    """The chain RPC URL: configured, already up (`oracle chain up`), or a local anvil for this run."""
    from oracle.devstack.localchain import chain_dir, ensure_deployment, running_chain_url

    if settings.chain_rpc_url:
        if not settings.deployment_file.exists():
            raise ConfigError(
                f"ORACLE_CHAIN_RPC_URL is set but there is no deployment record at {settings.deployment_file}"
            )
        yield settings.chain_rpc_url
        return
    if settings.env != "dev":
        raise ConfigError("ORACLE_CHAIN_RPC_URL: required outside dev")
    url = running_chain_url(settings)
    if url is not None:
        ensure_deployment(settings, url)
        yield url
        return
    from oracle.chain.anvil import start_anvil

    anvil = start_anvil(state_file=chain_dir(settings) / "anvil-state.json")
    # Recorded where `oracle chain up` records its chain, so the CLI in this data dir (`oracle verify`,
    # `oracle outbox pump`) finds the chain this run started.
    url_file = chain_dir(settings) / "rpc_url"
    try:
        ensure_deployment(settings, anvil.url)
        url_file.write_text(anvil.url + "\n")
        yield anvil.url
    finally:
        url_file.unlink(missing_ok=True)
        anvil.stop()


#: ``<data dir>/mqtt/<this>``: the URL of the broker ``oracle run`` started for this data directory.
BROKER_URL_FILE = "url"


@contextlib.contextmanager
def local_broker(settings: Settings) -> Iterator[dict[str, object]]:
    """The broker settings: as configured, or those of a local mosquitto for this run (its URL, and the
    worker and admin logins it made in ``<data dir>/mqtt/credentials``)."""
    if settings.mqtt_url:
        yield {"mqtt_url": settings.mqtt_url}
        return
    from oracle.devstack.broker import start_mosquitto

    broker = start_mosquitto(data_dir=settings.data_dir / "mqtt")
    # Where it answers, for `oracle devices add --broker-credential` in another shell on the same data
    # directory (its logins are already in <data dir>/mqtt/credentials).
    url_file = settings.data_dir / "mqtt" / BROKER_URL_FILE
    url_file.write_text(broker.url + "\n")
    try:
        yield broker.client_settings()
    finally:
        url_file.unlink(missing_ok=True)
        broker.stop()


@contextlib.contextmanager
def local_signer(settings: Settings, *, chain_id: int, router: str) -> Iterator[tuple[str, str]]:
    """(URL, token) of the signer: configured, or a child process holding the dev keystore."""
    if settings.signer_url:
        if settings.signer_token is None:
            raise ConfigError("ORACLE_SIGNER_TOKEN: required with ORACLE_SIGNER_URL")
        yield settings.signer_url, settings.signer_token.get_secret_value()
        return
    from oracle.devstack.localchain import signer_address
    from oracle.signer.keys import TOKEN_FILE, URL_FILE

    signer_address(settings)  # generates the dev keystore on first start
    d = settings.data_dir / "signer"
    (d / URL_FILE).unlink(missing_ok=True)
    log_file = (settings.data_dir / "signer.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oracle.signer.cli",
            "serve",
            "--chain-id",
            str(chain_id),
            "--router",
            router,
            "--dir",
            str(d),
            "--port",
            "0",
            "--exit-with-parent",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        # Out of the terminal's process group: Ctrl-C reaches this process only, which stops the
        # workers that ask for signatures before it stops the signer.
        start_new_session=True,
    )
    try:
        url = _wait_for_file(d / URL_FILE, proc, timeout=60)
        yield url, (d / TOKEN_FILE).read_text().strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], *, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise ToolError(f"the signer exited with code {proc.returncode}; see the data dir's signer.log")
        time.sleep(0.1)
    raise ToolError(f"the signer did not start within {timeout:.0f}s")


class Worker(threading.Thread):
    """Runs ``step`` every ``interval`` seconds until stopped; a failing step is logged, not fatal."""

    def __init__(self, name: str, step: Callable[[], object], interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.step = step
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception:
                log.exception("worker %s step failed; retrying in %.1fs", self.name, self.interval)
            self.stopping.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end and wait (bounded) for a step in progress: the caller stops the chain,
        broker and signer next, and a step still running then would fail against them."""
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
            if self.is_alive():
                log.warning("worker %s still running %.0f s after stop", self.name, timeout)


def serve(
    settings: Settings,
    *,
    demo: bool,
    port: int | None = None,
    network_dir: Path | None = None,
    node_id: str | None = None,
) -> None:
    """Run until interrupted; with ``network_dir`` and ``node_id``, as that member of the network (its
    reports are signed by k members before any is sent, see :mod:`oracle.network`)."""
    from oracle.api.app import create_app
    from oracle.chain.deploy import Deployment

    check_configured_endpoints(settings)
    ctx = open_context(settings)
    with contextlib.ExitStack() as stack:
        stack.callback(ctx.close)
        ctx.chain_rpc_url = stack.enter_context(local_chain(settings))
        deployment = Deployment.load(settings.deployment_file)
        ctx.extras["deployment"] = deployment
        broker_settings = stack.enter_context(local_broker(settings))
        ctx.mqtt_url = str(broker_settings["mqtt_url"])
        if not settings.mqtt_url:  # a local broker: this run's clients log in with its users
            ctx.settings = settings = settings.model_copy(update=broker_settings)
        signer_url, signer_token = stack.enter_context(
            local_signer(settings, chain_id=deployment.chain_id, router=deployment.address("OracleRouter"))
        )
        ctx.extras["signer"] = (signer_url, signer_token)
        if network_dir is not None and node_id is not None:
            _start_network_node(ctx, stack, network_dir, node_id, deployment, signer_url, signer_token)
        for worker in _workers(ctx, deployment):
            worker.start()
            stack.callback(worker.stop)
        from oracle.scheduler import start_scheduler

        stack.callback(start_scheduler(ctx).stop)
        from oracle.alarms.webhooks import WebhookDispatcher

        webhooks = WebhookDispatcher(ctx.sessions, settings.data_dir)  # alarm webhooks, from the queue
        webhooks.start()
        stack.callback(webhooks.stop)
        # The first evaluation would otherwise pay LightGBM's import (about 4 s here) inside the
        # breach-to-void path; load it beside start-up instead, off the path to /healthz.
        warm = threading.Thread(target=_warm_models, name="warm-models", daemon=True)
        warm.start()
        stack.callback(warm.join, 30.0)
        if settings.run_ingest_worker:
            stack.callback(start_ingest_worker(ctx))
        else:
            log.info("no MQTT ingest worker in this process (ORACLE_RUN_INGEST_WORKER=false)")
        app = create_app(ctx)
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port if port is None else port,
            log_config=None,
            access_log=False,
        )
        server = _Server(config)
        _announce(ctx, deployment, config, demo=demo)
        if demo:
            from oracle.devstack.demo import start_demo

            dashboard = f"http://{config.host}:{config.port}"
            stack.callback(start_demo(ctx, dashboard_url=dashboard).stop.set)
        server.run()
    log.info("oracle stopped")


def _start_network_node(
    ctx: Context,
    stack: contextlib.ExitStack,
    network_dir: Path,
    node_id: str,
    deployment: Deployment,
    signer_url: str,
    signer_token: str,
) -> None:
    """Join the network as ``node_id``: its own signer signs only its own reports; the round driver
    exchanges signatures with the peers and transmits on its turn."""
    from oracle.chain.client import connect
    from oracle.network.inputs import PeerBackedBlobStore
    from oracle.network.membership import Network, load_identity
    from oracle.network.node import peer_urls
    from oracle.network.rounds import NodeRuntime, RoundDriver
    from oracle.signer.client import HttpSigner

    network = Network.load(network_dir)
    member = network.member(node_id)
    signer = HttpSigner(signer_url, signer_token)
    stack.callback(signer.close)
    if signer.address.lower() != member.signer.lower():
        raise ConfigError(
            f"node {node_id}'s signer holds {signer.address}, but the network file names {member.signer}"
        )
    runtime = NodeRuntime(
        network=network,
        identity=load_identity(ctx.settings.data_dir, node_id),
        signer=signer,
        chain_id=deployment.chain_id,
        router=deployment.address("OracleRouter"),
        peer_urls=peer_urls(ctx.settings.data_dir),
    )
    if runtime.identity.address.lower() != member.peer_key.lower():
        raise ConfigError(f"node {node_id}'s peer key does not match the network file")
    ctx.extras["network_node"] = runtime
    # Decisions read inputs through the peers' stores when this node's own lacks one (checked by CID).
    ctx.blobs = PeerBackedBlobStore(ctx.blobs, ctx, runtime)
    driver = RoundDriver(ctx, runtime, connect(ctx.chain_rpc_url))
    driver.start()
    stack.callback(driver.stop)
    log.info(
        "network node %s joined %s (k=%d of %d)",
        node_id,
        network.name,
        network.threshold,
        len(network.members),
    )


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, which would kill this process before
    the ExitStack stops anvil, mosquitto and the signer. Here a signal only asks the server to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit = True


def _workers(ctx: Context, deployment: Deployment) -> list[Worker]:
    """Threads beside the scheduler. The outbox pump and the chain listener are scheduler jobs (they
    run on the elected leader only); the poster is built here so the scheduler reuses it."""
    from oracle.devstack.localchain import load_or_create_transmitter
    from oracle.posting import make_poster

    ctx.extras["poster"] = make_poster(ctx, load_or_create_transmitter(ctx.settings))
    workers: list[Worker] = []
    follower = _chainlink_follower(ctx, deployment)
    if follower is not None:
        workers.append(Worker("chainlink", follower.poll, 1.0))
    return workers


def _chainlink_follower(ctx: Context, deployment: Deployment) -> OracleRequestFollower | None:
    """Follows OracleRequest events of the Operator for the configured jobs (none configured: off)."""
    from oracle.chain.client import connect
    from oracle.chainlink.requests import DirectRequestConfig, OracleRequestFollower
    from oracle.chainlink.setup import parse_jobs
    from oracle.devstack.localchain import chainlink_jobs

    jobs = chainlink_jobs(ctx.settings)
    operator = ctx.settings.chainlink_operator or deployment.addresses.get("Operator", "")
    if not jobs or not operator:
        return None
    config = DirectRequestConfig(
        operator=operator,
        jobs=parse_jobs(jobs),
        default_min_payment=ctx.settings.chainlink_min_payment,
        confirmations=ctx.settings.chain_confirmations,
        start_block=deployment.block,
    )
    return OracleRequestFollower(ctx.sessions, ctx.blobs, connect(ctx.chain_rpc_url), config)


class _NotifyingIngest(TelemetryIngestBase):
    """The telemetry pipeline, plus a debounced re-evaluation of every shipment a committed batch touched
    (the scheduler's `on_new_telemetry`), so a breach is acted on within seconds, not at the next tick."""

    def __init__(self, ctx: Context, *, kek: Kek) -> None:
        super().__init__(sessions=ctx.sessions, blobs=ctx.blobs, kek=kek)
        self.ctx = ctx

    def process(self, messages: Sequence[IncomingMessage]) -> BatchOutcome:
        from oracle.scheduler.hooks import notify_committed_telemetry

        outcome = super().process(messages)
        if outcome.accepted:
            try:
                notify_committed_telemetry(self.ctx, messages, outcome)
            except Exception:
                log.exception("could not schedule evaluations after a telemetry batch")
        return outcome


def _warm_models() -> None:
    """Import LightGBM and load the shipped cold-chain model once, so the first breach is not slow."""
    try:
        from models.coldchain.breach_model import DEFAULT_ARTIFACT_DIR, load_breach_model
        from models.registry import list_models, load_model

        cards = list_models(DEFAULT_ARTIFACT_DIR)
        if cards:
            load_breach_model(load_model(DEFAULT_ARTIFACT_DIR, cards[0].model_id_hex)[0])
    except Exception:  # a warm-up only: the evaluation reports any real problem itself
        log.warning("could not pre-load the decision models", exc_info=True)


def start_ingest_worker(ctx: Context) -> Callable[[], None]:
    """The MQTT telemetry worker in a thread (acks after commit); returns its stop function."""
    from urllib.parse import urlparse

    from ingest.telemetry.worker import IngestWorker, worker_config
    from oracle.alarms.live import attach as attach_alarms
    from oracle.devices import load_kek

    u = urlparse(ctx.mqtt_url)
    config = worker_config(ctx.settings, host=u.hostname, port=u.port, tls=u.scheme == "mqtts")
    ingest = _NotifyingIngest(ctx, kek=load_kek(ctx.settings))
    attach_alarms(ingest, ctx.sessions)  # live excursion alarms on every committed reading
    worker = IngestWorker(ingest, config)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="ingest", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(timeout=10)

    return halt


def _announce(ctx: Context, deployment: Deployment, config: uvicorn.Config, *, demo: bool) -> None:
    lines = [
        "oracle is starting",
        f"  API        http://{config.host}:{config.port}  (/healthz, /readyz, /docs)",
        f"  chain      {ctx.chain_rpc_url}",
        f"  broker     {ctx.mqtt_url}",
        f"  data dir   {ctx.settings.data_dir.resolve()}",
    ]
    if demo:
        lines.append("  demo       seeding the scenario (oracle run --no-demo starts clean)")
    print("\n".join(lines), flush=True)
