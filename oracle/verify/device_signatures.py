"""The devices' own signatures on a decision's telemetry inputs, checked with their public keys.

A cold-chain decision's raw telemetry inputs are the signed messages exactly as the devices sent them
(CBOR ``[{"device", "payload"}]``, see :func:`oracle.decisions.coldchain.message_inputs`). A replay that is
given the devices' public keys checks every message's signature too, so a verifier learns not only that
the oracle computed honestly from these bytes, but that the bytes came from the devices: one check per
device (``signatures <device>``), naming the first message that fails and why.

A device that signs HS256 cannot be checked this way (only the oracle's secret verifies it): the replay
adds a note saying so, since that is the weaker kind of device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from sqlalchemy import select
from sqlalchemy.orm import Session

from oracle.device_keys import HMAC_WEAKER, Alg, load_public_key
from oracle.errors import ValidationError
from oracle.verify.replay import MATCH, MISMATCH, Check


@dataclass(frozen=True)
class DeviceAuth:
    """What a verifier knows of one device: its alg and public keys (SPKI PEM, last valid seq or None)."""

    alg: str
    keys: tuple[tuple[str, int | None], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"alg": self.alg, "keys": [{"pem": pem, "valid_through_seq": n} for pem, n in self.keys]}

    @classmethod
    def from_json(cls, doc: Any) -> DeviceAuth:
        """Inverse of :meth:`to_json`. :raises ValidationError: malformed."""
        try:
            keys = tuple(
                (str(k["pem"]), None if k["valid_through_seq"] is None else int(k["valid_through_seq"]))
                for k in doc["keys"]
            )
            return cls(alg=str(Alg(doc["alg"])), keys=keys)
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError(f"malformed device key record: {e}", reason="bad_device_keys") from e


def device_auth(session: Session, device_ids: Iterable[str] | None = None) -> dict[str, DeviceAuth]:
    """The registered public keys of ``device_ids`` (all devices when None), as :class:`DeviceAuth`."""
    from oracle.storage.tables import Device, DeviceKey

    q = select(Device)
    if device_ids is not None:
        q = q.where(Device.device_id.in_(sorted(set(device_ids))))
    devices = list(session.scalars(q))
    rows = session.scalars(
        select(DeviceKey)
        .where(DeviceKey.device_id.in_([d.device_id for d in devices]))
        .order_by(DeviceKey.id.desc())
    )
    keys: dict[str, list[tuple[str, int | None]]] = {}
    for k in rows:
        keys.setdefault(k.device_id, []).append((k.public_key, k.valid_through_seq))
    out = {}
    for d in devices:
        found = tuple(keys.get(d.device_id, ()))
        alg = Alg.HS256 if d.auth != "key" or not found else load_public_key(found[0][0]).alg
        out[d.device_id] = DeviceAuth(alg=str(alg), keys=found if alg is not Alg.HS256 else ())
    return out


def telemetry_messages(data: bytes) -> list[tuple[str, bytes]] | None:
    """The (device, payload) pairs of a telemetry input, or None when ``data`` is not one."""
    try:
        doc = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError):
        return None
    if not isinstance(doc, list) or not doc:
        return None
    out = []
    for m in doc:
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("device"), str)
            or not isinstance(m.get("payload"), bytes)
        ):
            return None
        out.append((m["device"], m["payload"]))
    return out


def telemetry_devices(raw: Mapping[str, bytes]) -> set[str]:
    """The devices whose messages are among the raw inputs ``raw`` (CID -> bytes)."""
    return {device for data in raw.values() for device, _ in (telemetry_messages(data) or [])}


def signature_checks(
    raw: Mapping[str, bytes], devices: Mapping[str, DeviceAuth]
) -> tuple[list[Check], list[str]]:
    """One check per device with messages among ``raw``, and notes (HS256 devices, unchecked)."""
    from ingest.telemetry.authn import check_envelope
    from ingest.telemetry.envelope import EnvelopeError, canonical_items, parse_envelope
    from oracle.devices import DeviceCredentials, KeyWindow

    seen: dict[str, int] = {}
    failures: dict[str, str] = {}
    for cid in sorted(raw):
        for device, payload in telemetry_messages(raw[cid]) or []:
            seen[device] = seen.get(device, 0) + 1
            if device in failures:
                continue
            auth = devices.get(device)
            if auth is None:
                failures[device] = f"no public key is known for {device} (message {cid})"
                continue
            if auth.alg == Alg.HS256:
                continue
            creds = DeviceCredentials(
                device_id=device,
                secret=None,
                active=True,  # the reading was accepted before any revocation; only the keys matter here
                bindings=(),
                keys=tuple(KeyWindow(load_public_key(pem), n) for pem, n in auth.keys),
            )
            try:
                envelope = parse_envelope(payload)
            except EnvelopeError as e:
                failures[device] = f"message {cid}: {e}"
                continue
            canonical = canonical_items(envelope)
            refusal = check_envelope(creds, None, envelope, canonical[0] if canonical else None)
            if refusal is not None:
                failures[device] = f"message {cid}: {refusal[0]}: {refusal[1]}"
    checks: list[Check] = []
    notes: list[str] = []
    for device in sorted(seen):
        auth = devices.get(device)
        if device in failures:
            checks.append(Check(f"signatures {device}", MISMATCH, failures[device]))
        elif auth is not None and auth.alg == Alg.HS256:
            notes.append(
                f"{device} signs HS256: its {seen[device]} message(s) were not checked ({HMAC_WEAKER})"
            )
        elif auth is not None:
            detail = f"{seen[device]} message(s) verify under the device's {auth.alg} public key(s)"
            checks.append(Check(f"signatures {device}", MATCH, detail))
    return checks, notes
