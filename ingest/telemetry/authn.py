"""Is this envelope the device's own? One check for the MQTT pipeline and the HTTP route.

Order: revocation (by seq), then the signature under the device's registered key(s). A device with its
own key pair verifies with its public keys only (``alg`` ES256 or EdDSA); a legacy device with its HMAC
secret only (``alg`` HS256 or absent). A key retired by a rotation verifies only envelopes whose readings
all have seq at most its ``valid_through_seq``; past it the envelope is ``stale_key``.
"""

from __future__ import annotations

import hmac
from typing import Any

from ingest.telemetry.envelope import Envelope, RejectReason, mac_ok
from oracle.device_keys import Alg, verify
from oracle.devices import DeviceCredentials


def max_seq(envelope: Envelope) -> int | None:
    """The highest ``seq`` in the body, or None when some reading has no integer seq (then no bound holds:
    the schema check refuses such a reading anyway)."""
    best = -1
    for item in envelope.items:
        seq: Any = item.get("seq") if isinstance(item, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            return None
        best = max(best, seq)
    return best


def check_envelope(
    creds: DeviceCredentials, mac: hmac.HMAC | None, envelope: Envelope, body: bytes | None
) -> tuple[RejectReason, str] | None:
    """None when ``envelope`` is signed by a key of ``creds`` valid for its seqs, else (reason, message).

    ``body``: the canonical JSON of the envelope's body (None when it cannot be re-serialised); ``mac``:
    the device's keyed HMAC for a legacy device. Messages name key fingerprints, never key material.
    """
    top = max_seq(envelope)
    if not creds.active:
        bound = -1 if creds.revoked_after_seq is None else creds.revoked_after_seq
        if top is None or top > bound:
            return (
                RejectReason.REVOKED_KEY,
                f"device revoked after seq {bound}: readings past it are refused",
            )
    if body is None:
        return RejectReason.BAD_SIGNATURE, "body cannot be re-serialised to canonical JSON"
    if creds.secret is not None:
        if envelope.alg is not Alg.HS256:
            return (
                RejectReason.BAD_SIGNATURE,
                f"device is registered with an HMAC secret (HS256), the envelope says {envelope.alg}",
            )
        if mac is None or not mac_ok(mac, body, envelope.sig):
            return RejectReason.BAD_SIGNATURE, "HMAC over the canonical JSON of body does not match"
        return None
    if envelope.alg is Alg.HS256:
        return (
            RejectReason.BAD_SIGNATURE,
            f"device signs with its own {creds.alg} key; HS256 (HMAC) envelopes are refused for it",
        )
    stale: list[str] = []
    for window in creds.keys:
        if window.key.alg is not envelope.alg or not verify(window.key, body, envelope.sig):
            continue
        if window.covers(top):
            return None
        stale.append(f"key {window.key.fingerprint} was rotated out after seq {window.valid_through_seq}")
    if stale:
        return RejectReason.STALE_KEY, f"{stale[0]}; seq {top} must be signed with the new key"
    return (
        RejectReason.BAD_SIGNATURE,
        f"{envelope.alg} signature does not verify under the device's registered public key(s)",
    )
