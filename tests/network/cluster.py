"""A real network for tests: N ``oracle run --network DIR --node ID`` processes on one anvil and one
mosquitto, each with its own data directory, database, content store and signer child process.

Every node ingests the same synthetic drought world (tests/drought/world.py) itself before it starts,
the way independent nodes each read the same catalogs; a test can give one node a doctored region.
"""

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from shapely.geometry import box
from web3 import Web3

from oracle.chain.anvil import dev_accounts
from oracle.chain.client import connect
from oracle.chain.deploy import Deployment
from oracle.config import Settings
from oracle.context import open_context
from oracle.device_keys import PrivateKey
from oracle.devstack.broker import BrokerProcess, running_broker
from oracle.network.init import deploy_network, init_network
from oracle.network.membership import Network
from oracle.network.node import MQTT_URL_FILE, RPC_URL_FILE, node_dir, node_settings, write_mqtt_login
from oracle.reports import subject_id

ROOT = Path(__file__).resolve().parents[2]

#: Eight regions, horizontal strips of the synthetic world's dry half (rows of 0.05° cells): each test
#: gets rounds of its own.
STRIPS = {f"s{i}": box(36.02, -0.98 + 0.12 * i, 36.48, -0.88 + 0.12 * i) for i in range(8)}


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(check: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}; last {last!r}")


class TcpProxy:
    """A loopback TCP forwarder a test can cut (every connection dropped, new ones refused) and mend."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_ports(1)[0]
        self._open = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.mend()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mend(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.settimeout(0.2)
        self._listener = listener
        self._open.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        self._open.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._open.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while chunk := a.recv(65536):
                b.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def buyer_shipment(reference: str) -> str:
    """The name of the cluster's buyer's (dev account 1) shipment ``reference``, ``0x<buyer>:<reference>``:
    the only name that buyer can escrow, and the name the loggers' readings and the reports use."""
    from oracle.chain.escrow import shipment_name_for

    return shipment_name_for(dev_accounts(2)[1].address, reference)


@dataclass
class Cluster:
    directory: Path
    rpc_url: str
    mqtt_url: str
    nodes: int
    threshold: int
    transmit_timeout_s: float = 2.0
    network: Network = field(init=False)
    deployment: Deployment = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    env_extra: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Each node reaches the chain through its own proxy, so a test can cut one node off the chain.
    chain_proxies: dict[str, TcpProxy] = field(default_factory=dict)
    #: Per node, regions whose geometry that node holds differently (a doctored input in its store).
    region_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: A node whose peer traffic, both ways, runs through proxies a test can cut (:meth:`cut_off`).
    partitionable: str | None = None
    bind_ports: dict[str, int] = field(default_factory=dict)
    peer_proxies: list[TcpProxy] = field(default_factory=list)

    @property
    def broker(self) -> BrokerProcess:
        """The broker at ``mqtt_url``, started by this test process (``oracle.devstack.broker``)."""
        broker = running_broker(self.mqtt_url)
        assert broker is not None, f"no broker started by this process answers at {self.mqtt_url}"
        return broker

    def setup(self, world_tmp: Path, *, seed_world: bool = True) -> None:
        ports = free_ports(self.nodes)
        if self.partitionable is not None:
            # Its peers reach it through an ingress proxy (the URL the network file advertises); it binds
            # its own port, where the test still reaches its API.
            index = int(self.partitionable.removeprefix("node")) - 1
            self.bind_ports[self.partitionable] = free_ports(1)[0]
            ingress = TcpProxy(self.bind_ports[self.partitionable])
            self.peer_proxies.append(ingress)
            ports[index] = ingress.port
        result = init_network(
            self.directory,
            nodes=self.nodes,
            threshold=self.threshold,
            ports=ports,
            transmit_timeout_s=self.transmit_timeout_s,
        )
        self.network = result.network
        (self.directory / RPC_URL_FILE).parent.mkdir(parents=True, exist_ok=True)
        (self.directory / RPC_URL_FILE).write_text(self.rpc_url + "\n")
        (self.directory / MQTT_URL_FILE).write_text(self.mqtt_url + "\n")
        # The nodes log in to the broker with its worker and admin users (the broker refuses anonymous
        # clients); the broker is one this test process started, so its logins are on disk.
        write_mqtt_login(self.directory, self.broker.client_settings())
        self.deployment = deploy_network(self.w3, self.directory, deployer=dev_accounts(1)[0], model_delay=0)
        if self.partitionable is not None:
            # ...and it reaches them through egress proxies of its own.
            reach = {}
            for m in self.network.members:
                if m.id != self.partitionable:
                    proxy = TcpProxy(int(m.url.rsplit(":", 1)[1]))
                    self.peer_proxies.append(proxy)
                    reach[m.id] = proxy.url
            (node_dir(self.directory, self.partitionable) / "peers.json").write_text(json.dumps(reach))
        anvil_port = int(self.rpc_url.rsplit(":", 1)[1].split("/")[0])
        for m in self.network.members:
            if seed_world:
                self.seed(m.id, world_tmp / m.id)
            self.chain_proxies[m.id] = TcpProxy(anvil_port)

    @property
    def w3(self) -> Web3:
        return connect(self.rpc_url)

    def settings(self, node_id: str) -> Settings:
        base = Settings(env="dev", data_dir=node_dir(self.directory, node_id))
        return node_settings(base, self.directory, node_id)

    def seed(self, node_id: str, tmp: Path) -> None:
        """The node ingests the synthetic drought world on its own (with :data:`STRIPS` as extra regions,
        one per test round), and gets an operator API key."""
        import json

        from ingest.observations import add_regions
        from oracle.api.keys import create_key, parse_role
        from tests.drought import world
        from tests.fixtures.rasters import region_feature_collection

        tmp.mkdir(parents=True, exist_ok=True)
        ctx = open_context(self.settings(node_id))
        try:
            world.build(ctx.sessions, ctx.blobs, tmp)
            strips = {**STRIPS, **self.region_overrides.get(node_id, {})}
            add_regions(ctx.sessions, ctx.blobs, json.dumps(region_feature_collection(strips)).encode())
            with ctx.sessions() as s:
                key = create_key(s, role=parse_role("operator"), name=f"test-{node_id}")
                s.commit()
            self.keys[node_id] = key.secret_key
        finally:
            ctx.close()

    # ------------------------------------------------------------------ processes

    def cut_off(self) -> None:
        """Cut the partitionable node off from every peer, both ways (chain and broker stay reachable)."""
        for proxy in self.peer_proxies:
            proxy.cut()

    def reconnect(self) -> None:
        for proxy in self.peer_proxies:
            proxy.mend()

    def api_url(self, node_id: str) -> str:
        if node_id in self.bind_ports:
            return f"http://127.0.0.1:{self.bind_ports[node_id]}"
        return self.network.member(node_id).url

    def start(self, node_id: str, *, env: dict[str, str] | None = None) -> None:
        d = node_dir(self.directory, node_id)
        log = (d / "node.log").open("ab")
        environment = {
            **os.environ,
            "ORACLE_ENV": "dev",
            "ORACLE_DATA_DIR": str(d),
            "ORACLE_LOG_LEVEL": "INFO",
            "ORACLE_CHAIN_RPC_URL": self.chain_proxies[node_id].url,
            **self.env_extra.get(node_id, {}),
            **(env or {}),
        }
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
                *(["--port", str(self.bind_ports[node_id])] if node_id in self.bind_ports else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=ROOT,
            start_new_session=True,
        )

    def wait_healthy(self, node_id: str, timeout: float = 90.0) -> None:
        url = self.api_url(node_id)

        def up() -> bool:
            proc = self.procs[node_id]
            if proc.poll() is not None:
                raise AssertionError(f"{node_id} exited with {proc.returncode}:\n{self.log(node_id)[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/healthz", timeout=1).status_code == 200
            return False

        wait_until(up, timeout=timeout, what=f"{node_id} /healthz")

    def start_all(self) -> None:
        for m in self.network.members:
            self.start(m.id)
        for m in self.network.members:
            self.wait_healthy(m.id)

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[node_id]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=20)

    def pause(self, node_id: str) -> None:
        os.killpg(self.procs[node_id].pid, signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        os.killpg(self.procs[node_id].pid, signal.SIGCONT)

    def stop_all(self) -> None:
        for _node_id, proc in self.procs.items():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
        for _node_id, proc in self.procs.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def log(self, node_id: str) -> str:
        return (node_dir(self.directory, node_id) / "node.log").read_text(errors="replace")

    # ------------------------------------------------------------------ API and chain

    def api(self, node_id: str, method: str, path: str, **kw: Any) -> httpx.Response:
        url = self.api_url(node_id) + path
        headers = {"Authorization": f"Bearer {self.keys[node_id]}"}
        return httpx.request(method, url, headers=headers, timeout=60, **kw)

    def request_evaluation(self, node_id: str, region: str, period: str) -> httpx.Response:
        body = {"subject": {"namespace": "region", "name": region}, "period": period}
        return self.api(node_id, "POST", "/v1/attestations", json=body)

    def latest(self, region: str) -> tuple[int, bytes]:
        router = self.deployment.contract(self.w3, "OracleRouter")
        epoch, _, _, _, report_hash = router.functions.latest(subject_id("region", region)).call()
        return int(epoch), bytes(report_hash)

    def accepted_events(self, region: str) -> list[Any]:
        router = self.deployment.contract(self.w3, "OracleRouter")
        logs = router.events.ReportAccepted().get_logs(
            from_block=self.deployment.block, argument_filters={"subject": subject_id("region", region)}
        )
        return list(logs)

    def round(self, node_id: str, region: str, epoch: int, *, namespace: str = "region") -> dict[str, Any]:
        """The node's own view of a round, read from its database (works while the node is down)."""
        from oracle.network.rounds import round_view

        ctx = open_context(self.settings(node_id), upgrade=False)
        try:
            return round_view(ctx, "0x" + subject_id(namespace, region).hex(), epoch)
        finally:
            ctx.close()

    # ------------------------------------------------------------------ cold chain

    def open_shipment(self, shipment: str, *, amount: int = 1_000 * 10**6) -> None:
        """The buyer escrows ``amount`` for ``shipment`` (a :func:`buyer_shipment` name; refrigerated
        profile) on the shared chain."""
        self.open_shipments([shipment], amount=amount)

    def open_shipments(self, shipments: list[str], *, amount: int = 1_000 * 10**6) -> None:
        """The buyer escrows ``amount`` for each shipment (:func:`buyer_shipment` names; refrigerated
        profile) and the seller accepts: one mint and one approval for all of them, then the two
        transactions each shipment takes."""
        from oracle.chain.client import transact
        from oracle.chain.escrow import open_escrow
        from oracle.decisions.coldchain import profile_bytes32

        w3 = self.w3
        deployer, buyer, seller = dev_accounts(3)
        coin = self.deployment.contract(w3, "TestStablecoin")
        escrow = self.deployment.contract(w3, "ColdChainEscrow")
        total = amount * len(shipments)
        transact(w3, coin.functions.mint(buyer.address, total), sender=deployer)
        transact(w3, coin.functions.approve(escrow.address, total), sender=buyer)
        now = int(w3.eth.get_block("latest")["timestamp"])
        for shipment in shipments:
            open_escrow(
                w3,
                escrow,
                name=shipment,
                buyer=buyer,
                seller=seller,
                token=coin.address,
                amount=amount,
                profile=profile_bytes32("refrigerated"),
                expected_delivery=now + 7 * 86_400,
                deadline=now + 30 * 86_400,
            )

    def knows_shipment(self, node_id: str, shipment: str) -> bool:
        from oracle.storage.tables import Shipment

        ctx = open_context(self.settings(node_id), upgrade=False)
        try:
            with ctx.sessions() as s:
                return s.get(Shipment, "0x" + subject_id("shipment", shipment).hex()) is not None
        finally:
            ctx.close()

    def enroll(self, device: str, shipment: str, *, start_s: int, secret: bytes | PrivateKey) -> None:
        """The same logger enrolled on every node, as each node's operator would: by its public key when
        ``secret`` is the logger's private key (no node then holds anything it could sign with), or with
        one shared HMAC secret for a legacy HS256 logger."""
        import datetime as dt

        from oracle.device_keys import public_pem
        from oracle.devices import load_kek, register_device, register_device_key

        since = dt.datetime.fromtimestamp(start_s - 60, dt.UTC)
        for m in self.network.members:
            settings = self.settings(m.id)
            ctx = open_context(settings, upgrade=False)
            try:
                if isinstance(secret, bytes):
                    register_device(
                        ctx.sessions,
                        load_kek(settings),
                        device_id=device,
                        shipment_id=shipment,
                        valid_from=since,
                        secret=secret,
                    )
                else:
                    register_device_key(
                        ctx.sessions,
                        device_id=device,
                        public_key_pem=public_pem(secret),
                        shipment_id=shipment,
                        valid_from=since,
                    )
            finally:
                ctx.close()

    def publish(
        self,
        device: str,
        secret: bytes | PrivateKey,
        temps: list[float],
        *,
        start_s: int,
        first_seq: int = 0,
        per_msg: int = 6,
    ) -> None:
        """Signed readings every 10 minutes from ``start_s``, published at QoS 1 on the shared broker
        (signed with the logger's private key, or HS256 when ``secret`` is bytes)."""
        import json
        from urllib.parse import urlparse

        from ingest.telemetry.envelope import sign_envelope, sign_envelope_with_key
        from tests.telemetry.mqtt_helpers import publish_all, publisher

        payloads = []
        for first in range(0, len(temps), per_msg):
            body = [
                {
                    "seq": first_seq + i,
                    "ts": (start_s + i * 600) * 1000,
                    "temp_c": temps[i],
                    "battery_pct": 90.0,
                }
                for i in range(first, min(first + per_msg, len(temps)))
            ]
            envelope = (
                sign_envelope(body, secret)
                if isinstance(secret, bytes)
                else sign_envelope_with_key(body, secret)
            )
            payloads.append(json.dumps(envelope).encode())
        u = urlparse(self.mqtt_url)
        client = publisher(
            u.hostname or "127.0.0.1",
            u.port or 1883,
            f"test-{device}-{first_seq}",
            login=self.broker.device_login(device),
        )
        try:
            publish_all(client, device, payloads)
        finally:
            client.loop_stop()
            client.disconnect()

    def shipment_events(self, shipment: str) -> list[Any]:
        router = self.deployment.contract(self.w3, "OracleRouter")
        return list(
            router.events.ReportAccepted().get_logs(
                from_block=self.deployment.block,
                argument_filters={"subject": subject_id("shipment", shipment)},
            )
        )


@contextlib.contextmanager
def running_cluster(
    tmp: Path,
    *,
    rpc_url: str,
    mqtt_url: str,
    nodes: int = 4,
    threshold: int = 3,
    start: bool = True,
    region_overrides: dict[str, dict[str, Any]] | None = None,
    partitionable: str | None = None,
) -> Iterator[Cluster]:
    cluster = Cluster(tmp / "net", rpc_url, mqtt_url, nodes, threshold)
    cluster.region_overrides = region_overrides or {}
    cluster.partitionable = partitionable
    cluster.setup(tmp / "world")
    try:
        if start:
            cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
