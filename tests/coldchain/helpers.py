"""Shipments with real devices, signed envelopes through the real ingest pipeline, and escrows on anvil."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

from ingest.telemetry.envelope import sign_envelope, sign_envelope_with_key
from ingest.telemetry.pipeline import IncomingMessage, TelemetryIngest
from oracle.chain.escrow import open_escrow as propose_and_accept
from oracle.chain.escrow import shipment_name_for
from oracle.decisions.coldchain import profile_bytes32
from oracle.device_keys import PrivateKey, public_pem
from oracle.devices import Kek, register_device, register_device_key
from tests.fixtures.chain import ChainKit

AMOUNT = 2_500 * 10**6
STEP_S = 600


def temperatures(
    hours: float, *, base: float = 5.0, excursion: tuple[float, float, float] | None = None
) -> list[float]:
    """10-minute series; ``excursion`` = (start hour, duration hours, temperature)."""
    out = []
    for i in range(int(hours * 3600 / STEP_S)):
        h = i * STEP_S / 3600
        t = base + 0.3 * ((i * 7) % 5 - 2) / 2
        if excursion and excursion[0] <= h < excursion[0] + excursion[1]:
            t = excursion[2]
        out.append(round(t, 2))
    return out


class Fleet:
    """Devices bound to shipments, publishing through the same ingest code path the MQTT worker uses."""

    def __init__(self, sessions: object, blobs: object) -> None:
        self.kek = Kek.from_bytes(os.urandom(32))
        self.ingest = TelemetryIngest(sessions=sessions, blobs=blobs, kek=self.kek)  # type: ignore[arg-type]
        self.sessions = sessions
        self.secrets: dict[str, bytes] = {}
        self.keys: dict[str, PrivateKey] = {}

    def add(self, device: str, shipment: str, *, start_s: int, key: PrivateKey | None = None) -> None:
        """Register ``device``: by its public key when ``key`` (its private key) is given, else HS256."""
        import datetime as dt

        since = dt.datetime.fromtimestamp(start_s - 60, dt.UTC)
        if key is not None:
            register_device_key(
                self.sessions,  # type: ignore[arg-type]
                device_id=device,
                public_key_pem=public_pem(key),
                shipment_id=shipment,
                valid_from=since,
            )
            self.keys[device] = key
            return
        self.secrets[device] = register_device(
            self.sessions,  # type: ignore[arg-type]
            self.kek,
            device_id=device,
            shipment_id=shipment,
            valid_from=since,
        )

    def publish(self, device: str, temps: Sequence[float], *, start_s: int, batch: int = 36) -> int:
        return self.publish_from(device, temps, first_seq=0, start_s=start_s, batch=batch)

    def publish_from(
        self, device: str, temps: Sequence[float], *, first_seq: int, start_s: int, batch: int = 36
    ) -> int:
        """Publish ``temps`` as readings ``first_seq``, ``first_seq + 1``, … from ``start_s`` on."""
        accepted = 0
        for first in range(0, len(temps), batch):
            body = [
                {
                    "seq": first_seq + i,
                    "ts": (start_s + i * STEP_S) * 1000,
                    "temp_c": temps[i],
                    "battery_pct": 90.0,
                }
                for i in range(first, min(first + batch, len(temps)))
            ]
            key = self.keys.get(device)
            envelope = sign_envelope_with_key(body, key) if key else sign_envelope(body, self.secrets[device])
            payload = json.dumps(envelope).encode()
            accepted += self.ingest.process(
                [IncomingMessage(device_id=device, payload=payload, source="http")]
            ).accepted
        return accepted


def open_escrow(chain: ChainKit, reference: str, *, profile: str = "refrigerated") -> str:
    """The chain's buyer escrows its shipment ``reference`` with the seller; returns the shipment's name
    (``0x<buyer>:<reference>``), the name telemetry, devices and reports use."""
    name = shipment_name_for(chain.accounts.buyer.address, reference)
    buyer = chain.accounts.buyer
    chain.send(chain.coin.functions.mint(buyer.address, AMOUNT))
    chain.send(chain.coin.functions.approve(chain.escrow.address, AMOUNT), buyer)
    now = chain.now()
    propose_and_accept(
        chain.w3,
        chain.escrow,
        name=name,
        buyer=buyer,
        seller=chain.accounts.seller,
        token=chain.coin.address,
        amount=AMOUNT,
        profile=profile_bytes32(profile),
        expected_delivery=now + 7 * 86_400,
        deadline=now + 30 * 86_400,
    )
    return name


def day_ago() -> int:
    return int(time.time()) - 86_400
