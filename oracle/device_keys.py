"""Device public keys: load a PEM, tell ES256 from EdDSA, verify and (for simulated devices) sign.

A device that signs with its own private key leaves the oracle nothing it could forge readings with:
the oracle keeps only the public key, and anyone holding it (an auditor, another node) verifies a
reading from the stored bytes alone.

- ``ES256``: ECDSA over NIST P-256 with SHA-256, the curve of secure elements such as the ATECC608.
  The signature is JOSE's raw ``r‖s``, 32 + 32 bytes big-endian (not DER).
- ``EdDSA``: Ed25519 (RFC 8032), 64-byte signature.
- ``HS256``: HMAC-SHA256 under a secret the oracle holds too. Still accepted for existing devices and
  shown as weaker everywhere a device's kind of key is shown, since the oracle could sign with it.

All of it is ``cryptography``; nothing here logs or returns a private key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from oracle.errors import ValidationError


class Alg(StrEnum):
    """The ``alg`` of a signed envelope (JOSE names)."""

    ES256 = "ES256"
    EDDSA = "EdDSA"
    HS256 = "HS256"


SIG_BYTES = {Alg.ES256: 64, Alg.EDDSA: 64, Alg.HS256: 32}

HMAC_WEAKER = "weaker: HS256 (HMAC), the oracle holds the device's secret and could forge its readings"
"""The note shown beside every HS256 device (API, CLI, dashboard, decision detail)."""

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class DevicePublicKey:
    """A loaded public key: its algorithm, the SPKI PEM as stored, and a fingerprint to name it by."""

    alg: Alg
    pem: str
    fingerprint: str
    """First 32 hex chars of SHA-256 over the DER SubjectPublicKeyInfo."""
    key: PublicKey = field(repr=False, compare=False)


def auth_kind(alg: Alg | str) -> dict[str, str]:
    """How a device authenticates, for views: ``{"alg", "strength"[, "note"]}``."""
    if Alg(alg) is Alg.HS256:
        return {"alg": "HS256", "strength": "weaker", "note": HMAC_WEAKER}
    return {"alg": str(Alg(alg)), "strength": "device-held key"}


def load_public_key(pem: bytes | str) -> DevicePublicKey:
    """Parse a PEM public key; P-256 → ES256, Ed25519 → EdDSA.

    Raises ValidationError(reason="bad_public_key") for anything else: other curves, RSA, a private key,
    or text that is not a PEM public key.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in data:
        raise ValidationError(
            "this is a PRIVATE key: give the oracle only the device's public key "
            "(openssl pkey -in device.pem -pubout)",
            reason="bad_public_key",
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ValidationError(f"not a PEM public key: {e}", reason="bad_public_key") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValidationError(
                f"ECDSA key on curve {key.curve.name}: only P-256 (secp256r1, ES256) is accepted",
                reason="bad_public_key",
            )
        alg = Alg.ES256
        typed: PublicKey = key
    elif isinstance(key, ed25519.Ed25519PublicKey):
        alg = Alg.EDDSA
        typed = key
    else:
        raise ValidationError(
            f"{type(key).__name__.removeprefix('_')} keys are not accepted: "
            "use ECDSA P-256 (ES256) or Ed25519 (EdDSA)",
            reason="bad_public_key",
        )
    der = typed.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    spki = typed.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return DevicePublicKey(
        alg=alg, pem=spki.decode(), fingerprint=hashlib.sha256(der).hexdigest()[:32], key=typed
    )


def verify(key: DevicePublicKey, message: bytes, sig: bytes) -> bool:
    """True when ``sig`` (raw r‖s for ES256, 64 bytes for Ed25519) signs ``message`` under ``key``."""
    if len(sig) != SIG_BYTES[key.alg]:
        return False
    try:
        if isinstance(key.key, ed25519.Ed25519PublicKey):
            key.key.verify(sig, message)
        else:
            r = int.from_bytes(sig[:32], "big")
            s = int.from_bytes(sig[32:], "big")
            if r == 0 or s == 0:
                return False
            key.key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def sign(private_key: PrivateKey, message: bytes) -> tuple[Alg, bytes]:
    """What a device does: (alg, signature) over ``message``; ES256 as raw r‖s (64 bytes)."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return Alg.EDDSA, private_key.sign(message)
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise ValidationError("ES256 needs a P-256 key", reason="bad_private_key")
    r, s = decode_dss_signature(private_key.sign(message, ec.ECDSA(hashes.SHA256())))
    return Alg.ES256, r.to_bytes(32, "big") + s.to_bytes(32, "big")


def public_pem(private_key: PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key: what ``oracle devices add --public-key`` reads."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
