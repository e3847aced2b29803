"""``oracle run`` on embedded defaults: a local network of nodes (3, k = 2) with the live demo.

One anvil and one mosquitto are shared; every node is a separate ``oracle run --network DIR --node ID``
process with its own data directory (database, content store, signer child process, transmitter key,
peer key) under ``<data dir>/network/nodes/``. Node 1 answers on ``ORACLE_API_PORT`` (the dashboard),
the others on the next ports. The router is deployed with the members' signer addresses and k.

The demo (:class:`NetworkDemo`) plays the single-node scenario (:mod:`oracle.devstack.demo`) against the
network: every node ingests the same rasters itself, the same loggers are enrolled on every node by their
public key (each logger's Ed25519 private key is generated at run time under ``<data dir>/network/
demo-devices/``, the device side, and no node holds it) and publish once to the shared broker, every node
is asked to evaluate, and each report lands when k nodes computed and signed the same one. ``oracle run
--single`` runs one node as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from oracle.config import Settings
from oracle.errors import ToolError
from oracle.network.membership import NETWORK_FILE, Network
from oracle.network.node import (
    DEPLOYMENT_FILE,
    MQTT_URL_FILE,
    RPC_URL_FILE,
    node_dir,
    node_settings,
    write_mqtt_login,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from oracle.chain.deploy import Deployment

log = logging.getLogger(__name__)

NODES = 3
THRESHOLD = 2
#: The demo insurer's liveness window: a drought report pays only this long after it reached the pool,
#: and the watcher (or anyone) may dispute it meanwhile. The nodes' keepers settle it once it is over.
DEMO_LIVENESS_S = 30
#: The watcher's own account (not a network key): ether for gas and bonds in the pool's token.
WATCHER_KEY_FILE = "watcher.key"
#: The key of the watcher process among :attr:`LocalNetwork.procs`.
WATCHER = "watcher"
#: Under the network directory: the signed disposition reports the demo produces.
DISPOSITIONS_DIR = "dispositions"
DEMO_QA_NAME = "Demo QA (simulated)"


def _subject(shipment: str) -> str:
    from oracle.reports import subject_id

    return "0x" + subject_id("shipment", shipment).hex()


@dataclass
class LocalNetwork:
    directory: Path
    rpc_url: str
    mqtt_url: str
    network: Network
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def settings(self, base: Settings, node_id: str) -> Settings:
        return node_settings(
            base.model_copy(update={"chain_rpc_url": "", "mqtt_url": ""}), self.directory, node_id
        )

    def start(self, node_id: str) -> None:
        d = node_dir(self.directory, node_id)
        out = (d / "node.log").open("ab")
        env = {k: v for k, v in os.environ.items() if k not in ("ORACLE_DATA_DIR", "ORACLE_API_PORT")}
        env |= {"ORACLE_ENV": "dev", "ORACLE_DATA_DIR": str(d)}
        self.procs[node_id] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from oracle.cli import main; main()",
                "run",
                "--network",
                str(self.directory),
                "--node",
                node_id,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        out.close()

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.network.ids)
        while pending:
            for node_id in sorted(pending):
                proc = self.procs[node_id]
                if proc.poll() is not None:
                    log_file = node_dir(self.directory, node_id) / "node.log"
                    tail = log_file.read_text(errors="replace")[-2000:]
                    raise ToolError(f"{node_id} exited with code {proc.returncode}; its log ends:\n{tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.network.member(node_id).url + "/healthz", timeout=1).status_code == 200:
                        pending.discard(node_id)
            if time.monotonic() > deadline:
                raise ToolError(f"{', '.join(sorted(pending))} did not answer /healthz within {timeout:.0f}s")
            time.sleep(0.3)

    def start_watcher(self, dep: Deployment) -> None:
        """``oracle watch`` beside the nodes, as anyone could run it: no key of the network, only the
        chain's RPC, the nodes' public URLs and an account of its own (generated here at first run, funded
        with ether and bonds) to dispute a report it cannot reproduce on the pool or the escrow. Its log is
        ``<network>/watch/watch.log``."""
        d = self.directory / "watch"
        d.mkdir(parents=True, exist_ok=True)
        key_file = _funded_watcher_key(self.rpc_url, dep, d / WATCHER_KEY_FILE)
        router, from_block = dep.address("OracleRouter"), dep.block
        out = (d / "watch.log").open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
        nodes = [arg for m in self.network.members for arg in ("--node", m.url)]
        self.procs[WATCHER] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from oracle.cli import main; main()",
                "watch",
                "--rpc-url",
                self.rpc_url,
                "--router",
                router,
                *nodes,
                "--state",
                str(d / "state.json"),
                "--evidence",
                str(d / "evidence"),
                "--from-block",
                str(from_block),
                "--interval",
                "1",
                "--dispute-key",
                str(key_file),
                "--pool",
                dep.address("DroughtInsurancePool"),
                "--escrow",
                dep.address("ColdChainEscrow"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        out.close()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextlib.contextmanager
def local_network(
    settings: Settings, *, nodes: int = NODES, threshold: int = THRESHOLD
) -> Iterator[LocalNetwork]:
    """Make (once) and run a local network in ``<data dir>/network``: chain, broker, nodes."""
    from oracle.chain.anvil import dev_accounts, start_anvil
    from oracle.chain.client import connect
    from oracle.chain.deploy import Deployment
    from oracle.devstack.broker import start_mosquitto
    from oracle.network.init import deploy_network, init_network

    directory = settings.data_dir / "network"
    if not (directory / NETWORK_FILE).exists():
        init_network(directory, nodes=nodes, threshold=threshold, base_port=settings.api_port)
    network = Network.load(directory)
    (directory / "chain").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        anvil = start_anvil(state_file=directory / "chain" / "anvil-state.json")
        stack.callback(anvil.stop)
        broker = start_mosquitto(data_dir=directory / "mqtt")
        stack.callback(broker.stop)
        (directory / RPC_URL_FILE).write_text(anvil.url + "\n")
        (directory / MQTT_URL_FILE).write_text(broker.url + "\n")
        write_mqtt_login(directory, broker.client_settings())  # how the nodes log in to it
        stack.callback((directory / RPC_URL_FILE).unlink, missing_ok=True)
        w3 = connect(anvil.url)
        record = directory / DEPLOYMENT_FILE
        live = False
        if record.exists():
            dep = Deployment.load(record)
            live = dep.chain_id == w3.eth.chain_id and len(w3.eth.get_code(dep.address("OracleRouter"))) > 0  # type: ignore[arg-type]
        if not live:
            deploy_network(w3, directory, deployer=dev_accounts(1)[0])
        net = LocalNetwork(directory, anvil.url, broker.url, network)
        stack.callback(net.stop)
        for node_id in network.ids:
            net.start(node_id)
        net.wait_healthy()
        net.start_watcher(Deployment.load(record))
        yield net


def _funded_watcher_key(rpc_url: str, dep: Deployment, key_file: Path) -> Path:
    """The watcher's key (created once, 0600, never logged), topped up to 1 ether and 10 dispute bonds."""
    from eth_account import Account

    from oracle.chain.anvil import dev_accounts
    from oracle.chain.client import connect, transact
    from oracle.devstack.demo import DEMO_DISPUTE_BOND

    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    address = Account.from_key(bytes.fromhex(key_file.read_text().strip())).address
    w3 = connect(rpc_url)
    if w3.eth.get_balance(address) < 10**18:
        w3.provider.make_request("anvil_setBalance", [address, hex(10**18)])  # type: ignore[arg-type]
    coin = dep.contract(w3, "TestStablecoin")
    bonds = 10 * DEMO_DISPUTE_BOND
    held = int(coin.functions.balanceOf(address).call())
    if held < bonds:
        transact(w3, coin.functions.mint(address, bonds - held), sender=dev_accounts(1)[0])
    return key_file


# ---------------------------------------------------------------------------------------------- demo


@dataclass
class NetworkDemo:
    net: LocalNetwork
    base: Settings
    period: str = ""
    device_keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict, repr=False)
    keys: dict[str, str] = field(default_factory=dict)
    #: Node 1's admin key and the demo QA signer's signing password (in memory only, never printed).
    admin: str = field(default="", repr=False)
    qa_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    start_s: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def note(self, message: str) -> None:
        log.info("demo: %s", message)
        print(f"  demo       {message}", flush=True)

    def _each_node(self) -> Iterator[tuple[str, Any]]:
        from oracle.context import open_context

        for node_id in self.net.network.ids:
            ctx = open_context(self.net.settings(self.base, node_id), upgrade=False)
            try:
                yield node_id, ctx
            finally:
                ctx.close()

    def seed(self) -> str:
        """Inputs and keys on every node, policies and escrows on the chain; returns node 1's admin key."""
        from oracle.api.keys import Role, create_key
        from oracle.chain.client import connect
        from oracle.chain.deploy import Deployment
        from oracle.device_keys import public_pem
        from oracle.devices import register_device_key
        from oracle.devstack.demo import (
            DEVICE_KEYS_DIR,
            TICKS,
            demo_shipments,
            device_of,
            open_policies_and_escrows,
            seed_inputs,
            simulated_device_key,
        )
        from oracle.disposition.signoffs import enroll_signer

        now = dt.datetime.now(dt.UTC)
        self.start_s = int(time.time()) - TICKS * 600
        device_side = self.net.directory / DEVICE_KEYS_DIR
        devices = [device_of(s) for s in demo_shipments()]
        self.device_keys = {device: simulated_device_key(device_side, device) for device in devices}
        admin = ""
        for node_id, ctx in self._each_node():
            self.period = seed_inputs(ctx, now=now)  # the same bytes on every node: each ingests them itself
            with ctx.sessions() as s:
                self.keys[node_id] = create_key(
                    s, role=Role.OPERATOR, name=f"demo driver {node_id}"
                ).secret_key
                if node_id == self.net.network.ids[0]:
                    made = create_key(s, role=Role.ADMIN, name=f"demo admin {now:%Y-%m-%d %H:%M}")
                    admin = made.secret_key
                    # The operator watching the demo also signs dispositions, as the QA person would.
                    enroll_signer(s, key_id=made.key.id, printed_name=DEMO_QA_NAME, password=self.qa_password)
                s.commit()
            for shipment in demo_shipments():
                device = device_of(shipment)
                register_device_key(  # the same public key on every node; no node holds a device secret
                    ctx.sessions,
                    device_id=device,
                    public_key_pem=public_pem(self.device_keys[device]),
                    shipment_id=shipment,
                    valid_from=dt.datetime.fromtimestamp(self.start_s - 60, dt.UTC),
                )
        deployment = Deployment.load(self.net.directory / DEPLOYMENT_FILE)
        open_policies_and_escrows(connect(self.net.rpc_url), deployment, liveness_s=DEMO_LIVENESS_S)
        self.admin = admin
        n, k = len(self.net.network.members), self.net.network.threshold
        self.note(f"seeded 3 regions, 3 policies and 3 escrows; {n} nodes, k = {k}; evaluating {self.period}")
        self.note(
            f"a drought report pays {DEMO_LIVENESS_S} s after it reached the pool (the insurer's liveness"
            " window, in which the watcher disputes what it cannot reproduce); the nodes' keepers settle it"
        )
        return admin

    def _ask_all(self, body: dict[str, Any]) -> list[int]:
        """Ask every node to evaluate ``body``'s subject (each computes and signs its own report)."""
        codes = []
        for node_id in self.net.network.ids:
            url = self.net.network.member(node_id).url + "/v1/attestations"
            try:
                r = httpx.post(
                    url, json=body, headers={"Authorization": f"Bearer {self.keys[node_id]}"}, timeout=60
                )
                codes.append(r.status_code)
            except httpx.HTTPError as e:
                log.warning("demo: %s did not answer: %s", node_id, e)
                codes.append(0)
        return codes

    def run(self) -> None:
        threading.Thread(target=self._disposition, name="demo-disposition", daemon=True).start()
        try:
            self._drought()
            self._sensors_and_verdicts()
        except Exception as e:
            if self.stop.is_set():  # the network is shutting down: its broker may be gone already
                log.info("the demo stopped with the network (%s)", e)
                return
            log.exception("the demo stopped with an error; the network keeps running")

    def _drought(self) -> None:
        from oracle.devstack.demo import REGIONS

        for region in REGIONS:
            codes = self._ask_all({"subject": {"namespace": "region", "name": region}, "period": self.period})
            signed = sum(1 for c in codes if c in (200, 201))
            self.note(
                f"{region}: {signed} of {len(codes)} nodes computed and signed their report for {self.period}"
            )

    def _disposition(self) -> None:
        """Once the overheated shipment is voided, the QA person signs its disposition report on node 1
        (approval, with the signing password) and the signed PDF is kept under ``dispositions/``."""
        from oracle.devstack.demo import demo_shipments

        try:
            breached = next(s for s, excursion in demo_shipments().items() if excursion)
            base = self.net.network.members[0].url
            headers = {"Authorization": f"Bearer {self.admin}"}
            while not self.stop.wait(2.0):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    shipments = httpx.get(
                        f"{base}/v1/shipments?status=voided", headers=headers, timeout=10
                    ).json()
                    if any(x.get("subject") == _subject(breached) for x in shipments.get("items", [])):
                        break
            else:
                return
            url = f"{base}/v1/shipments/{breached}/disposition"
            for _ in range(10):  # the record may still move (the listener, a late confirmation): sign again
                sha = httpx.get(url, headers=headers, timeout=30).json()["content_sha256"]
                body = {
                    "printed_name": DEMO_QA_NAME,
                    "meaning": "approval",
                    "content_sha256": sha,
                    "signing_password": self.qa_password,
                }
                r = httpx.post(url + "/signoffs", json=body, headers=headers, timeout=30)
                if r.status_code == 201:
                    break
                log.info("demo: disposition sign-off of %s answered %s; retrying", breached, r.status_code)
                self.stop.wait(2.0)
            else:
                self.note(f"{breached}: the disposition report could not be signed")
                return
            signed = r.json()
            pdf = httpx.get(url + ".pdf", headers=headers, timeout=60)
            pdf.raise_for_status()
            out = self.net.directory / DISPOSITIONS_DIR / f"{breached}.pdf"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(pdf.content)
            self.note(
                f"{breached}: disposition signed ({signed['meaning']}) by {signed['printed_name']} at "
                f"{signed['signed_at']}, content SHA-256 {signed['content_sha256'][:16]}…; report {out}"
            )
        except Exception:
            log.exception("the demo's disposition sign-off stopped with an error")

    def _sensors_and_verdicts(self) -> None:

        from oracle.decisions.coldchain import mark_delivered
        from oracle.devstack.demo import (
            TICKS,
            close_clients,
            demo_shipments,
            device_of,
            sensor_clients,
            sensor_payload,
        )

        first = self.net.settings(self.base, self.net.network.ids[0])  # the network's broker logins
        clients = sensor_clients(self.net.mqtt_url, first, [device_of(s) for s in demo_shipments()])
        settled: set[str] = set()
        try:
            for tick in range(TICKS):
                if self.stop.is_set():
                    return
                for shipment, excursion in demo_shipments().items():
                    device = device_of(shipment)
                    payload = sensor_payload(
                        tick, excursion, start_s=self.start_s, key=self.device_keys[device]
                    )
                    clients[device].publish(f"oracle/v1/telemetry/{device}", payload, qos=1)
                if tick % 5 == 4:
                    for shipment in demo_shipments():
                        if shipment in settled:
                            continue
                        codes = self._ask_all({"subject": {"namespace": "shipment", "name": shipment}})
                        if any(c in (200, 201) for c in codes):
                            self.note(
                                f"{shipment}: BREACH detected by the nodes; the void goes out on k signatures"
                            )
                            settled.add(shipment)
                self.stop.wait(1.0)
            delivered_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
            for shipment in demo_shipments():
                if shipment in settled:
                    continue
                # The consignee's hand-over reaches every node alike (one document, one CID).
                for _, ctx in self._each_node():
                    mark_delivered(
                        ctx.sessions, ctx.blobs, shipment, delivered_at=delivered_at, by="demo consignee"
                    )
                codes = self._ask_all({"subject": {"namespace": "shipment", "name": shipment}})
                if any(c in (200, 201) for c in codes):
                    self.note(f"{shipment}: delivered without breach; the release goes out on k signatures")
        finally:
            close_clients(clients)


def serve_local_network(settings: Settings, *, demo: bool) -> None:
    """Run the local network (and its demo) until interrupted."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with local_network(settings) as net:
            first = net.network.members[0]
            lines = [
                f"oracle network is running: {len(net.network.members)} nodes, k = {net.network.threshold}",
                *(f"  {m.id:<10} {m.url}  (signer {m.signer})" for m in net.network.members),
                f"  chain      {net.rpc_url}",
                f"  broker     {net.mqtt_url}",
                f"  data dir   {net.directory.resolve()}",
                f"  watcher    oracle watch, no keys: {(net.directory / 'watch' / 'watch.log').resolve()}",
            ]
            print("\n".join(lines), flush=True)
            runner = None
            if demo:
                d = NetworkDemo(net, settings)
                key = d.seed()
                d.note(f"dashboard  {first.url}/#key={key}")
                d.note(f"admin API key (shown once): {key}")
                runner = threading.Thread(target=d.run, name="demo", daemon=True)
                runner.start()
            while not stop.is_set():
                for node_id, proc in net.procs.items():
                    if proc.poll() is not None:
                        raise ToolError(f"{node_id} exited with code {proc.returncode}; see its node.log")
                stop.wait(1.0)
            if demo and runner is not None:
                d.stop.set()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info("oracle network stopped")
