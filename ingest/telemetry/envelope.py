"""Signed telemetry envelopes: canonical JSON, HMAC-SHA256, and the schema of one reading.

Wire format (MQTT payload or HTTP body), UTF-8 JSON::

    {"body": <reading> | [<reading>, ...], "sig": "<hex>", "alg"?: "ES256" | "EdDSA" | "HS256"}

    reading = {"seq": int, "ts": int (UNIX ms), "temp_c": number,
               "humidity_pct"?: number, "door_open"?: bool, "battery_pct"?: number,
               "lat"?: number, "lon"?: number}

The signature covers :func:`canonical_json` of ``body``, i.e.
``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` encoded as UTF-8:

- ``ES256``: ECDSA P-256/SHA-256 with the device's private key, ``sig`` = raw r‖s (128 hex chars);
- ``EdDSA``: Ed25519 with the device's private key (128 hex chars);
- ``HS256`` or no ``alg``: HMAC-SHA256 under the device's secret (64 hex chars). Weaker: the oracle holds
  that secret too (see :mod:`oracle.device_keys`).

Numbers: the oracle parses the body and re-serialises it, so a device must sign exactly the bytes this
function produces. Integers render as integers (``4``); floats render as the shortest decimal that
round-trips the IEEE-754 double (Python ``repr``: ``4.25``, ``-18.0``, ``0.1``); values of magnitude below
1e-4 or from 1e16 up render with an exponent (``1e-05``) and are best avoided (send 0 or round). A device
that sends ``4.10`` must sign ``4.1``: the safest firmware builds the canonical string first, signs it, and
sends ``{"body": <that string>, "sig": ...}`` with the string spliced in verbatim. NaN and ±Infinity are
refused. See ``ingest/telemetry/README.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from oracle.device_keys import SIG_BYTES, Alg, PrivateKey, sign
from oracle.errors import ValidationError

MAX_ENVELOPE_BYTES = 262_144
"""The broker's max_packet_size; the HTTP path enforces the same bound."""

MAX_READINGS_PER_ENVELOPE = 10_000

#: Physical plausibility bounds. Outside them the reading is a sensor fault, not a temperature excursion.
TEMP_RANGE_C = (-100.0, 100.0)
PERCENT_RANGE = (0.0, 100.0)
LAT_RANGE = (-90.0, 90.0)
LON_RANGE = (-180.0, 180.0)

_MAX_INT = 2**63 - 1
MAX_NESTING = 8
"""An envelope nests 3 deep (envelope, body array, reading). Deeper JSON is refused before parsing: the C
JSON decoder recurses per level and a few hundred thousand ``[`` can overflow the C stack."""
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_REQUIRED = ("seq", "ts", "temp_c")
_OPTIONAL_NUMBERS = ("humidity_pct", "battery_pct", "lat", "lon")
_FIELDS = frozenset((*_REQUIRED, *_OPTIONAL_NUMBERS, "door_open"))


class RejectReason(StrEnum):
    """Reason codes recorded in ``rejects.reason`` and the ``reason`` label of the reject counter."""

    MALFORMED = "malformed"  # not JSON, not an envelope, or a reading breaks the schema
    TOO_LARGE = "too_large"  # over MAX_ENVELOPE_BYTES or MAX_READINGS_PER_ENVELOPE
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_DEVICE = "unknown_device"
    REVOKED_DEVICE = "revoked_device"  # kept for rows recorded before revocation went by seq
    REVOKED_KEY = "revoked_key"  # the device was revoked; the reading's seq is past the last accepted one
    STALE_KEY = "stale_key"  # signed by a rotated-out key, for a seq past that key's last valid one
    UNBOUND_DEVICE = "unbound_device"  # no shipment binding covers the reading's time
    REPLAY = "replay"  # a sequence number already used for different content
    FUTURE_TIMESTAMP = "future_timestamp"
    OUT_OF_WINDOW = "out_of_window"  # older than the device's newest reading by more than the window
    SENSOR_FAULT = "sensor_fault"  # physically impossible value


class EnvelopeError(ValidationError):
    """A payload or reading refused; ``reason`` is a :class:`RejectReason` value."""

    def __init__(self, message: str, reason: RejectReason) -> None:
        super().__init__(message, reason=reason.value)
        self.code = reason


@dataclass(frozen=True)
class Reading:
    """One validated reading. ``ts_ms`` UNIX ms; temperatures °C; percentages 0…100; degrees WGS84."""

    seq: int
    ts_ms: int
    temp_c: float
    humidity_pct: float | None
    door_open: bool | None
    battery_pct: float | None
    lat: float | None
    lon: float | None
    digest: str
    """First 32 hex chars of SHA-256 over the reading's canonical JSON: tells a redelivery from a replay."""


@dataclass(frozen=True)
class Envelope:
    body: Any
    sig: bytes
    alg: Alg
    items: tuple[Any, ...]
    """The body's readings, still unvalidated (one per array element, or the single object)."""


# One encoder and decoder for the process: json.dumps/loads with options build a new one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(body: Any) -> bytes:
    """The bytes a device signs: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return _CANONICAL.encode(body).encode()


def sign_body(body: Any, secret: bytes) -> str:
    return hmac.new(secret, canonical_json(body), hashlib.sha256).hexdigest()


def sign_envelope(body: Any, secret: bytes) -> dict[str, Any]:
    """The reference HMAC signer (HS256, no ``alg`` key, as legacy devices send): ``{"body", "sig"}``."""
    return {"body": body, "sig": sign_body(body, secret)}


def sign_envelope_with_key(body: Any, private_key: PrivateKey) -> dict[str, Any]:
    """The reference signer for devices with their own key: ``{"body", "sig", "alg"}`` (ES256 or EdDSA)."""
    alg, sig = sign(private_key, canonical_json(body))
    return {"body": body, "sig": sig.hex(), "alg": str(alg)}


def _refuse_constant(name: str) -> Any:
    raise EnvelopeError(f"{name} is not a JSON number the oracle accepts", RejectReason.MALFORMED)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _check_nesting(payload: bytes) -> None:
    # Brackets inside strings are counted too: harmless, since the schema has no string values.
    brackets = payload.translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= MAX_NESTING:
        return
    depth = 0
    for b in brackets:
        depth += 1 if b in b"[{" else -1
        if depth > MAX_NESTING:
            raise EnvelopeError(f"payload nests deeper than {MAX_NESTING} levels", RejectReason.MALFORMED)


def parse_envelope(payload: bytes) -> Envelope:
    """Decode the outer envelope. Raises EnvelopeError (malformed / too_large); checks no signature."""
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(
            f"payload of {len(payload)} bytes exceeds {MAX_ENVELOPE_BYTES}", RejectReason.TOO_LARGE
        )
    _check_nesting(payload)
    try:
        text = payload.decode("utf-8")
        doc = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise EnvelopeError("payload is not UTF-8", RejectReason.MALFORMED) from None
    except json.JSONDecodeError as e:
        raise EnvelopeError(f"payload is not JSON: {e.msg} at {e.pos}", RejectReason.MALFORMED) from None
    except RecursionError:
        raise EnvelopeError("payload nests too deeply", RejectReason.MALFORMED) from None
    if not isinstance(doc, dict):
        raise EnvelopeError("envelope must be a JSON object with body and sig", RejectReason.MALFORMED)
    if not {"body", "sig"} <= set(doc) <= {"body", "sig", "alg"}:
        raise EnvelopeError(
            "envelope must have exactly the keys body and sig (and optionally alg), "
            f"got {sorted(map(str, doc))[:5]}",
            RejectReason.MALFORMED,
        )
    alg_name = doc.get("alg", "HS256")
    try:
        alg = Alg(alg_name)
    except ValueError:
        raise EnvelopeError(
            f"alg must be ES256, EdDSA or HS256, got {str(alg_name)[:20]!r}", RejectReason.MALFORMED
        ) from None
    want = 2 * SIG_BYTES[alg]
    sig_hex = doc["sig"]
    if not isinstance(sig_hex, str) or len(sig_hex) != want:
        raise EnvelopeError(f"sig must be {want} hex characters for {alg}", RejectReason.MALFORMED)
    try:
        sig = bytes.fromhex(sig_hex)
    except ValueError:
        raise EnvelopeError(f"sig must be {want} hex characters for {alg}", RejectReason.MALFORMED) from None
    body = doc["body"]
    if isinstance(body, dict):
        items: tuple[Any, ...] = (body,)
    elif isinstance(body, list):
        if not body:
            raise EnvelopeError("body is an empty array", RejectReason.MALFORMED)
        if len(body) > MAX_READINGS_PER_ENVELOPE:
            raise EnvelopeError(
                f"{len(body)} readings exceed {MAX_READINGS_PER_ENVELOPE} per envelope",
                RejectReason.TOO_LARGE,
            )
        items = tuple(body)
    else:
        raise EnvelopeError("body must be a reading object or an array of them", RejectReason.MALFORMED)
    return Envelope(body=body, sig=sig, alg=alg, items=items)


def signature_ok(envelope: Envelope, secret: bytes) -> bool:
    """Constant-time check of the envelope's HMAC over the canonical JSON of its body."""
    try:
        expected = hmac.new(secret, canonical_json(envelope.body), hashlib.sha256).digest()
    except ValueError:  # a float that overflowed to inf while parsing cannot be re-serialised
        return False
    return hmac.compare_digest(expected, envelope.sig)


def canonical_items(envelope: Envelope) -> tuple[bytes, tuple[bytes, ...]] | None:
    """The canonical JSON of the body and of each reading, serialising every reading only once.

    A JSON array with no whitespace is ``[`` + the items joined by ``,`` + ``]``, so the body's bytes are
    assembled from the items' bytes (identical to :func:`canonical_json` of the body). None when a value
    cannot be re-serialised (a float that overflowed to inf while parsing): such a body cannot be verified.
    """
    try:
        items = tuple(canonical_json(item) for item in envelope.items)
    except ValueError:
        return None
    body = items[0] if isinstance(envelope.body, dict) else b"[" + b",".join(items) + b"]"
    return body, items


def mac_key(secret: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 object keyed with ``secret``, to be ``.copy()``-ed per message (skips re-keying)."""
    return hmac.new(secret, digestmod=hashlib.sha256)


def mac_ok(key: hmac.HMAC, body: bytes, sig: bytes) -> bool:
    """Constant-time check of ``sig`` against HMAC(key, body); ``key`` from :func:`mac_key`."""
    mac = key.copy()
    mac.update(body)
    return hmac.compare_digest(mac.digest(), sig)


def _number(item: dict[str, Any], key: str, *, required: bool) -> float | None:
    v = item.get(key)
    if v is None:
        if required or key in item:
            raise EnvelopeError(f"{key} is required and must be a number", RejectReason.MALFORMED)
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise EnvelopeError(f"{key} must be a number, got {type(v).__name__}", RejectReason.MALFORMED)
    f = float(v) if isinstance(v, float) or abs(v) < 2**53 else math.inf
    if not math.isfinite(f):
        raise EnvelopeError(f"{key} is not a finite number", RejectReason.MALFORMED)
    return f


def _integer(item: dict[str, Any], key: str) -> int:
    v = item.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise EnvelopeError(f"{key} is required and must be an integer", RejectReason.MALFORMED)
    if not 0 <= v <= _MAX_INT:
        raise EnvelopeError(f"{key} must be between 0 and 2^63-1", RejectReason.MALFORMED)
    return v


def _in_range(name: str, value: float | None, bounds: tuple[float, float], unit: str) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise EnvelopeError(
            f"{name}={value} outside the physically possible {bounds[0]:g}…{bounds[1]:g} {unit}",
            RejectReason.SENSOR_FAULT,
        )


def validate_reading(item: Any, canonical: bytes | None = None) -> Reading:
    """Check one reading's schema (malformed) and physical plausibility (sensor_fault).

    ``canonical``: the reading's :func:`canonical_json` when the caller already has it (saves a re-encode).
    """
    if not isinstance(item, dict):
        raise EnvelopeError("a reading must be a JSON object", RejectReason.MALFORMED)
    unknown = set(item) - _FIELDS
    if unknown:
        raise EnvelopeError(f"unexpected fields {sorted(unknown)[:5]}", RejectReason.MALFORMED)
    seq = _integer(item, "seq")
    ts = _integer(item, "ts")
    temp = _number(item, "temp_c", required=True)
    assert temp is not None  # required=True never returns None
    hum = _number(item, "humidity_pct", required=False)
    bat = _number(item, "battery_pct", required=False)
    lat = _number(item, "lat", required=False)
    lon = _number(item, "lon", required=False)
    door = item.get("door_open")
    if door is not None and not isinstance(door, bool):
        raise EnvelopeError("door_open must be true or false", RejectReason.MALFORMED)
    if "door_open" in item and door is None:
        raise EnvelopeError("door_open must be true or false", RejectReason.MALFORMED)
    _in_range("temp_c", temp, TEMP_RANGE_C, "°C")
    _in_range("humidity_pct", hum, PERCENT_RANGE, "%")
    _in_range("battery_pct", bat, PERCENT_RANGE, "%")
    _in_range("lat", lat, LAT_RANGE, "°")
    _in_range("lon", lon, LON_RANGE, "°")
    digest = hashlib.sha256(canonical_json(item) if canonical is None else canonical).hexdigest()[:32]
    return Reading(seq, ts, temp, hum, door, bat, lat, lon, digest)
