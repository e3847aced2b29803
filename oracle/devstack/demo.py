"""The `make run` demo: a scenario seeded on the embedded defaults and run live.

Three regions over a small grid in central Kenya, each insured by a funded policy on the local chain; the
northern one slides into drought over the seeded months (its rains fail from six months before the
evaluated period and its vegetation browns). Three shipments are escrowed, each under a name that
begins with the buyer's address (``0x<buyer>:SHP-VACCINES-1``, so nobody can take its id first); their
simulated loggers publish readings over MQTT, one compressed "10 minutes" per second, and one of them
overheats. Each logger signs EdDSA with its own key, generated at run time under
``<data dir>/demo-devices/``; the oracle is given only the public key.

What happens, all through the real pipeline (content store, decisions, signer, outbox, router): the
drought decisions are posted at once and the northern policy pays out; the overheated shipment is
voided within about a minute; the other two are delivered and released after two minutes.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from oracle.context import Context

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from oracle.config import Settings

log = logging.getLogger(__name__)

GRID = (24, 36)  # rows × cols of 0.05° cells
ORIGIN = (36.5, 1.0)  # lon, lat of the top-left corner
REGIONS = {
    "KE-NORTH": (36.55, 0.45, 38.25, 0.95),
    "KE-CENTRAL": (36.55, -0.05, 38.25, 0.40),
    "KE-SOUTH": (36.55, -0.15, 38.25, -0.05),
}
DROUGHT_REGION = "KE-NORTH"
#: The demo buyer's shipments by reference: no excursion, or (first tick, ticks, °C) of one. Their names,
#: which devices, telemetry and reports use, begin with the buyer's address (:func:`demo_shipments`).
SHIPMENT_REFERENCES = {"SHP-VACCINES-1": None, "SHP-VACCINES-2": (25, 9, 46.0), "SHP-INSULIN-3": None}
#: The demo buyer and seller among anvil's dev accounts.
DEMO_BUYER, DEMO_SELLER = 5, 6
TICKS = 120
DEVICE_KEYS_DIR = "demo-devices"
"""Under the data directory: the simulated loggers' private keys (the device side; never given to a node)."""


def evaluated_period(now: dt.datetime) -> str:
    """The last complete month before ``now``."""
    first = now.replace(day=1)
    last_month = first - dt.timedelta(days=1)
    return f"{last_month.year:04d}-{last_month.month:02d}"


def _geotiff(values: np.ndarray, *, when: str, units: str | None, scale: float = 1.0) -> bytes:
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    transform = from_origin(ORIGIN[0], ORIGIN[1], 0.05, 0.05)
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            width=values.shape[1],
            height=values.shape[0],
            count=1,
            dtype=values.dtype.name,
            crs="EPSG:4326",
            transform=transform,
            nodata=-9999,
            compress="deflate",
        ) as dst:
            dst.write(values, 1)
            dst.scales = (scale,)
            if units:
                dst.units = (units,)
            dst.update_tags(time=when)
        data: bytes = mem.read()
    return data


def _rows_for(region: str) -> slice:
    _, south, _, north = REGIONS[region]
    top = round((ORIGIN[1] - north) / 0.05)
    bottom = round((ORIGIN[1] - south) / 0.05)
    return slice(max(0, top), min(GRID[0], bottom))


def seed_inputs(ctx: Context, *, now: dt.datetime, seed: int = 11) -> str:
    """Regions and 40 months of rasters; returns the evaluated period (YYYY-MM)."""
    from shapely.geometry import box, mapping

    from ingest.observations import add_regions, ingest_raster

    rng = np.random.default_rng(seed)
    period = evaluated_period(now)
    year, month = int(period[:4]), int(period[5:])
    features = [
        {
            "type": "Feature",
            "properties": {"region_id": rid, "name": rid.title()},
            "geometry": mapping(box(*b)),
        }
        for rid, b in REGIONS.items()
    ]
    add_regions(
        ctx.sessions, ctx.blobs, json.dumps({"type": "FeatureCollection", "features": features}).encode()
    )
    climatology = [60, 55, 110, 160, 90, 35, 25, 30, 40, 90, 120, 80]
    north = _rows_for(DROUGHT_REGION)
    for back in range(40, -1, -1):
        index = year * 12 + month - 1 - back
        y, m = index // 12, index % 12 + 1
        normal = climatology[m - 1] * float(rng.gamma(10, 0.1))
        values = np.full(GRID, normal, dtype=np.float32) + rng.normal(0, 2, GRID).astype(np.float32)
        if back < 6:  # the northern rains fail: the slide into drought over the last six months
            values[north] *= 0.1 + 0.05 * back
        data = _geotiff(np.clip(values, 0, None), when=f"{y:04d}-{m:02d}-01T00:00:00Z", units="mm")
        ingest_raster(
            ctx.sessions, ctx.blobs, data, variable="precip", name=f"chirps-{y}-{m:02d}", source="demo"
        )
    for y in range(year - 4, year + 1):
        dry = y == year
        ndvi = np.full(GRID, 6000 + rng.normal(0, 800), dtype=np.float32)
        lst = np.full(GRID, 303 + rng.normal(0, 1.2), dtype=np.float32)
        sm = np.full(GRID, 0.27 + rng.normal(0, 0.02), dtype=np.float32)
        if dry:
            ndvi[north], lst[north], sm[north] = 3900, 309.0, 0.09
        when = f"{y:04d}-{month:02d}-15T00:00:00Z"
        layers: list[tuple[str, np.ndarray[Any, Any], str | None, float]] = [
            ("ndvi", ndvi.astype(np.int16), None, 0.0001),
            ("lst", lst, "K", 1.0),
            ("soil_moisture", sm, "m3 m-3", 1.0),
        ]
        for variable, values, units, scale in layers:
            data = _geotiff(values, when=when, units=units, scale=scale)
            ingest_raster(
                ctx.sessions, ctx.blobs, data, variable=variable, name=f"{variable}-{y}", source="demo"
            )
    return period


@functools.cache
def demo_shipments() -> dict[str, tuple[int, int, float] | None]:
    """The demo's shipments by name (``0x<demo buyer>:<reference>``, the only names the buyer can escrow;
    ``oracle.chain.escrow.shipment_name_for``), each with its excursion or None."""
    from oracle.chain.anvil import dev_accounts
    from oracle.chain.escrow import shipment_name_for

    buyer = dev_accounts(DEMO_BUYER + 1)[DEMO_BUYER].address
    return {shipment_name_for(buyer, ref): excursion for ref, excursion in SHIPMENT_REFERENCES.items()}


def device_of(shipment: str) -> str:
    """The demo logger travelling with ``shipment``."""
    return "LOGGER-" + shipment.rsplit("-", 1)[-1]


def simulated_device_key(directory: Path, device: str) -> Ed25519PrivateKey:
    """The demo logger's own Ed25519 key, generated at run time under ``directory`` (mode 0600).

    This directory is the simulated device's side: the oracle nodes are given only the public key
    (``public_pem``), as an operator would register a real logger. Never committed: it lives in the run's
    data directory.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{device}.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, Ed25519PrivateKey):
            return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def sensor_payload(
    tick: int, excursion: tuple[int, int, float] | None, *, start_s: int, key: Ed25519PrivateKey
) -> str:
    """The envelope a demo logger publishes at ``tick`` (one reading every 10 simulated minutes), signed
    EdDSA with the logger's own key."""
    from ingest.telemetry.envelope import sign_envelope_with_key

    temp = 4.8 + 0.4 * np.sin(tick / 5.0) + 0.1 * ((tick * 7) % 3 - 1)
    if excursion and excursion[0] <= tick < excursion[0] + excursion[1]:
        temp = excursion[2] - 0.3 * ((tick * 5) % 3)
    body = {
        "seq": tick,
        "ts": (start_s + tick * 600) * 1000,
        "temp_c": round(float(temp), 2),
        "battery_pct": 95.0,
    }
    return json.dumps(sign_envelope_with_key(body, key))


def demo_product_terms(region: str, now: int) -> dict[str, Any]:
    """The demo's drought product for ``region`` as ``DroughtInsurancePool.registerProduct`` takes it:
    severity trigger 1.0, exit 4.0, limit 10,000 tUSD, monthly, coverage now ± 400 days, 60 days' grace,
    premium 5 % of the limit with a 20 % loading (600 tUSD). ``termsHash`` is keccak256 of the terms as
    canonical JSON (sorted keys, no spaces)."""
    from eth_utils.crypto import keccak

    from oracle.reports import subject_id, to_fixed

    terms: dict[str, Any] = {
        "region": region,
        "index": "drought_severity",
        "trigger": to_fixed(1.0),
        "exit": to_fixed(4.0),
        "limit": 10_000 * 10**6,
        "deductible": 0,
        "coverageStart": now - 400 * 86_400,
        "coverageEnd": now + 400 * 86_400,
        "grace": 60 * 86_400,
        "periodMonths": 1,
        "premium": 0,
        "rateBps": 500,
        "loadingBps": 2_000,
    }
    canonical = json.dumps(terms, sort_keys=True, separators=(",", ":")).encode()
    on_chain = {k: v for k, v in terms.items() if k != "index"}
    return {**on_chain, "termsHash": keccak(canonical), "region": subject_id("region", region)}


#: The bond a dispute of a demo report takes, and the reward an upheld one earns (test stablecoin, 6 dp).
DEMO_DISPUTE_BOND = 100 * 10**6
DEMO_DISPUTE_REWARD = 25 * 10**6
#: Seconds the network has to answer a dispute of a demo report with a replacement.
DEMO_ANSWER_WINDOW_S = 600


def open_policies_and_escrows(w3: Any, deployment: Any, *, liveness_s: int = 0) -> None:
    """A policy per demo region, bought by its policyholder from the insurer's product, and an escrow per
    demo shipment, as insurer, policyholders and buyer would. With ``liveness_s`` > 0 the insurer gives
    each product that liveness window before selling it and turns disputes on (bond, reward, answer
    window): a report then pays only once its window is over, and anyone may dispute it meanwhile."""
    from oracle.chain.anvil import dev_accounts
    from oracle.chain.client import transact
    from oracle.chain.escrow import open_escrow
    from oracle.decisions.coldchain import profile_bytes32

    accounts = dev_accounts(8)
    deployer, buyer, seller = accounts[0], accounts[DEMO_BUYER], accounts[DEMO_SELLER]
    pool = deployment.contract(w3, "DroughtInsurancePool")
    escrow = deployment.contract(w3, "ColdChainEscrow")
    coin = deployment.contract(w3, "TestStablecoin")
    block_time = int(w3.eth.get_block("latest")["timestamp"])
    if liveness_s:
        terms_call = pool.functions.setDisputeTerms(
            DEMO_DISPUTE_BOND, DEMO_DISPUTE_REWARD, DEMO_ANSWER_WINDOW_S
        )
        transact(w3, terms_call, sender=deployer)
    for i, region in enumerate(REGIONS):
        # The insurer registers the region's product; its policyholder buys it, paying the premium.
        terms = demo_product_terms(region, block_time)
        receipt = transact(w3, pool.functions.registerProduct(terms), sender=deployer)
        (registered,) = pool.events.ProductRegistered().process_receipt(receipt)
        product_id = int(registered["args"]["productId"])
        if liveness_s:
            transact(w3, pool.functions.setLiveness(product_id, liveness_s), sender=deployer)
        premium = int(pool.functions.product(product_id).call()[8])
        holder = accounts[2 + i]
        transact(w3, coin.functions.mint(holder.address, premium), sender=deployer)
        transact(w3, coin.functions.approve(pool.address, premium), sender=holder)
        transact(w3, pool.functions.buyPolicy(product_id, holder.address), sender=holder)
    amount = 2_000 * 10**6
    shipments = demo_shipments()
    transact(w3, coin.functions.mint(buyer.address, amount * len(shipments)), sender=deployer)
    transact(w3, coin.functions.approve(escrow.address, amount * len(shipments)), sender=buyer)
    for shipment in shipments:
        # The buyer proposes the terms under its own name for the shipment and deposits; the seller
        # accepts them (until then nothing settles).
        open_escrow(
            w3,
            escrow,
            name=shipment,
            buyer=buyer,
            seller=seller,
            token=coin.address,
            amount=amount,
            profile=profile_bytes32("refrigerated"),
            expected_delivery=block_time + 7 * 86_400,
            deadline=block_time + 30 * 86_400,
        )


@dataclass
class Demo:
    ctx: Context
    period: str = ""
    device_keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict, repr=False)
    start_s: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    events: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.events.append(message)
        log.info("demo: %s", message)
        print(f"  demo       {message}", flush=True)

    # -- set-up on the chain ---------------------------------------------------------------------

    def seed(self) -> None:
        from oracle.chain.client import connect
        from oracle.chain.deploy import Deployment
        from oracle.device_keys import public_pem
        from oracle.devices import register_device_key

        now = dt.datetime.now(dt.UTC)
        self.period = seed_inputs(self.ctx, now=now)
        deployment = self.ctx.extras["deployment"]
        assert isinstance(deployment, Deployment)
        open_policies_and_escrows(connect(self.ctx.chain_rpc_url), deployment)
        self.start_s = int(time.time()) - TICKS * 600
        device_side = self.ctx.settings.data_dir / DEVICE_KEYS_DIR
        for shipment in demo_shipments():
            device = device_of(shipment)
            self.device_keys[device] = simulated_device_key(device_side, device)
            register_device_key(  # the oracle gets the public key only
                self.ctx.sessions,
                device_id=device,
                public_key_pem=public_pem(self.device_keys[device]),
                shipment_id=shipment,
                valid_from=dt.datetime.fromtimestamp(self.start_s - 60, dt.UTC),
            )
        self.note(f"seeded 3 regions, 3 funded policies and 3 escrowed shipments; evaluating {self.period}")

    # -- the live part ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._post_drought()
            self._sensors_and_verdicts()
        except Exception as e:
            if self.stop.is_set():  # the service is shutting down: its broker may be gone already
                log.info("the demo stopped with the service (%s)", e)
                return
            log.exception("the demo stopped with an error; the service keeps running")

    def _post(self, outcome: Any, name: str) -> None:
        from oracle.scheduler.evaluations import attest_outcome

        attest_outcome(self.ctx, outcome, subject_name=name)

    def _post_drought(self) -> None:
        from oracle.decisions.drought import evaluate_drought

        for region in REGIONS:
            outcome = evaluate_drought(
                self.ctx.sessions, self.ctx.blobs, region_id=region, period=self.period
            )
            if outcome.report is None:
                self.note(f"{region}: {outcome.status} ({outcome.reason})")
                continue
            self.note(f"{region}: drought severity {outcome.score:.2f} for {self.period}; posting")
            self._post(outcome, region)

    def _sensors_and_verdicts(self) -> None:

        from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment, mark_delivered

        devices = [device_of(s) for s in demo_shipments()]
        clients = sensor_clients(self.ctx.mqtt_url, self.ctx.settings, devices)
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
                        try:
                            outcome = evaluate_shipment(
                                self.ctx.sessions,
                                self.ctx.blobs,
                                shipment_id=shipment,
                                terms=ShipmentTerms(profile="refrigerated"),
                            )
                        except Exception as e:  # noqa: BLE001 - no readings stored yet is normal early on
                            log.debug("demo: %s not evaluable yet: %s", shipment, e)
                            continue
                        if outcome.report is not None:
                            self.note(f"{shipment}: BREACH detected; posting the void")
                            self._post(outcome, shipment)
                            settled.add(shipment)
                self.stop.wait(1.0)
            for shipment in demo_shipments():
                if shipment in settled:
                    continue
                mark_delivered(
                    self.ctx.sessions,
                    self.ctx.blobs,
                    shipment,
                    delivered_at=dt.datetime.now(dt.UTC),
                    by="demo consignee",
                )
                outcome = evaluate_shipment(
                    self.ctx.sessions,
                    self.ctx.blobs,
                    shipment_id=shipment,
                    terms=ShipmentTerms(profile="refrigerated"),
                )
                if outcome.report is not None:
                    self.note(f"{shipment}: delivered without breach; posting the release")
                    self._post(outcome, shipment)
        finally:
            close_clients(clients)


def sensor_clients(url: str, settings: Settings, devices: list[str]) -> dict[str, Any]:
    """One connected MQTT client per simulated logger, each logged in as its device: the broker refuses
    anonymous clients and lets a device publish on its own topic only. The credentials are issued as
    ``oracle devices add`` issues them, through the broker's admin user (``ORACLE_MQTT_ADMIN_*``)."""
    from oracle.broker_auth import BrokerAdmin, MqttLogin, admin_login, connect_mqtt

    logins: dict[str, MqttLogin] = {}
    admin = admin_login(settings)
    if admin is not None:
        with BrokerAdmin(url, admin, ca_file=settings.mqtt_ca_file) as broker_admin:
            logins = {d: MqttLogin(d, broker_admin.issue_device(d)) for d in devices}
    return {
        d: connect_mqtt(url, f"oracle-demo-{d}"[:64], login=logins.get(d), ca_file=settings.mqtt_ca_file)
        for d in devices
    }


def close_clients(clients: dict[str, Any]) -> None:
    for client in clients.values():
        client.loop_stop()
        client.disconnect()


def demo_admin_key(ctx: Context) -> str:
    """A fresh admin API key for the operator watching the demo (stored hashed, shown once)."""
    from oracle.api.keys import Role, create_key

    with ctx.sessions() as s:
        new = create_key(s, role=Role.ADMIN, name=f"demo admin {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}")
        s.commit()
    return new.secret_key


def start_demo(ctx: Context, *, dashboard_url: str) -> Demo:
    """Seed (synchronously), print where to watch, and run the live part in a background thread."""
    demo = Demo(ctx)
    key = demo_admin_key(ctx)
    demo.note(f"dashboard  {dashboard_url}/#key={key}")
    demo.note(f"admin API key (shown once): {key}")
    demo.seed()
    threading.Thread(target=demo.run, name="demo", daemon=True).start()
    return demo
