"""The signing key: generated into an encrypted keystore, loaded once at start-up, never shown.

Files in a signer directory (directory mode 0700, files 0600)::

    keystore.json   eth-account keystore v3 (scrypt + AES-128-CTR) holding the private key
    passphrase      random passphrase that decrypts the keystore
    token           bearer token clients must send to the signing service
    url             written by ``serve``: the URL it listens on
    epochs.sqlite3  the epoch memory (see :mod:`oracle.signer.epochs`)

A plain private key (``ORACLE_SIGNER_PRIVATE_KEY``) is accepted only with ``ORACLE_ENV=dev``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.address import to_checksum_address

from oracle.config import Settings
from oracle.errors import ConfigError

logger = logging.getLogger(__name__)

KEYSTORE_FILE = "keystore.json"
PASSPHRASE_FILE = "passphrase"  # noqa: S105 - a file name, not a secret
TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret
URL_FILE = "url"
EPOCHS_FILE = "epochs.sqlite3"


class SigningKey:
    """A secp256k1 key that can sign 32-byte digests. Its repr and str show the address only."""

    __slots__ = ("_account", "address")

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise ConfigError("a signing key must be 32 bytes")
        try:
            account = Account.from_key(private_key)
        except (ValueError, TypeError):
            # The library's message could quote the input; keep ours generic.
            raise ConfigError("the signing key is not a valid secp256k1 private key") from None
        self._account = account
        self.address: str = str(to_checksum_address(account.address))

    @classmethod
    def from_hex(cls, private_key_hex: str) -> SigningKey:
        try:
            raw = bytes.fromhex(private_key_hex.strip().removeprefix("0x"))
        except ValueError:
            raise ConfigError("the private key is not hex") from None
        return cls(raw)

    def sign_digest(self, digest: bytes) -> bytes:
        """The 65-byte ``r || s || v`` signature (v = 27 or 28) of a 32-byte digest."""
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes")
        # Signing a bare hash is only safe because callers pass the EIP-712 digest of a report they
        # validated themselves (oracle.reports.report_digest); nothing signs a hash it was handed.
        signed = Account.unsafe_sign_hash(digest, self._account.key)
        return bytes(signed.signature)

    def __repr__(self) -> str:
        return f"SigningKey(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a SigningKey cannot be pickled")


@dataclass(frozen=True, slots=True)
class KeygenResult:
    """What ``keygen`` wrote. No secrets: just the address and the file paths."""

    address: str
    keystore: Path
    passphrase_file: Path | None
    token_file: Path


def _write_secret(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never overwriting) and write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def generate_keystore(out_dir: Path, *, passphrase: str, passphrase_file: Path | None) -> KeygenResult:
    """Generate a key into an encrypted keystore under ``passphrase``, and a bearer token, in ``out_dir``;
    the passphrase is written to ``passphrase_file`` when given (mode 0600), never elsewhere.

    Refuses (``ConfigError``) to overwrite an existing keystore, passphrase or token: losing a signer
    key silently would change the oracle's identity. Takes about a second (scrypt).
    """
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    targets = [out_dir / KEYSTORE_FILE, out_dir / PASSPHRASE_FILE, out_dir / TOKEN_FILE]
    existing = [p.name for p in targets if p.exists()]
    if passphrase_file is not None and passphrase_file.exists() and passphrase_file not in targets:
        existing.append(str(passphrase_file))
    if existing:
        raise ConfigError(
            f"{out_dir} already holds {', '.join(existing)}; refusing to overwrite a signer key"
        )
    account = Account.create()
    keystore = Account.encrypt(account.key, passphrase)
    if passphrase_file is not None:
        _write_secret(passphrase_file, passphrase + "\n")
    _write_secret(targets[0], json.dumps(keystore, indent=2) + "\n")
    _write_secret(targets[2], secrets.token_urlsafe(32) + "\n")
    address = str(to_checksum_address(account.address))
    logger.debug("generated signer key address=%s dir=%s", address, out_dir)
    return KeygenResult(
        address=address, keystore=targets[0], passphrase_file=passphrase_file, token_file=targets[2]
    )


def new_passphrase() -> str:
    """A random keystore passphrase (256 bits)."""
    return secrets.token_urlsafe(32)


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a secret file, stripped; ``ConfigError`` naming the file when unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"cannot read {what} file {path}: {e.strerror}") from None
    if not text:
        raise ConfigError(f"{what} file {path} is empty")
    return text


def decrypt_keystore(keystore: Path, passphrase: str) -> SigningKey:
    """Decrypt an eth-account v3 keystore (slow: scrypt, about a second). ``ConfigError`` on any failure."""
    try:
        data = json.loads(keystore.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read keystore {keystore}: {e.strerror}") from None
    except ValueError:
        raise ConfigError(f"keystore {keystore} is not JSON") from None
    try:
        raw = Account.decrypt(data, passphrase)
    except ValueError as e:
        reason = "wrong passphrase" if "MAC" in str(e) else "unsupported or damaged keystore"
        raise ConfigError(f"cannot decrypt keystore {keystore}: {reason}") from None
    except (KeyError, TypeError):
        raise ConfigError(f"keystore {keystore} is not a v3 keystore") from None
    return SigningKey(bytes(raw))


def load_signing_key(settings: Settings, *, signer_dir: Path, keystore: Path | None = None) -> SigningKey:
    """Load the signing key as configured; called once at start-up.

    Order: ``ORACLE_SIGNER_PRIVATE_KEY`` (dev only; ``ConfigError`` in prod), else the keystore
    (``keystore`` argument, ``ORACLE_SIGNER_KEYSTORE``, or ``<signer_dir>/keystore.json``) decrypted with
    ``ORACLE_SIGNER_PASSPHRASE_FILE``, ``ORACLE_SIGNER_PASSPHRASE`` or ``<signer_dir>/passphrase``.
    """
    if settings.signer_private_key is not None:
        if settings.env != "dev":
            raise ConfigError(
                "ORACLE_SIGNER_PRIVATE_KEY is a dev-only convenience; use an encrypted keystore"
            )
        if keystore is not None or settings.signer_keystore is not None:
            raise ConfigError("give either ORACLE_SIGNER_PRIVATE_KEY or a keystore, not both")
        logger.warning("using a plain private key from the environment (dev only)")
        return SigningKey.from_hex(settings.signer_private_key.get_secret_value())
    path = keystore or settings.signer_keystore or signer_dir / KEYSTORE_FILE
    if not path.exists():
        raise ConfigError(f"no keystore at {path}; run `oracle signer keygen` or set ORACLE_SIGNER_KEYSTORE")
    if settings.signer_passphrase_file is not None:
        passphrase = read_secret_file(settings.signer_passphrase_file, "passphrase")
    elif settings.signer_passphrase is not None:
        passphrase = settings.signer_passphrase.get_secret_value()
    elif (signer_dir / PASSPHRASE_FILE).exists():
        passphrase = read_secret_file(signer_dir / PASSPHRASE_FILE, "passphrase")
    else:
        raise ConfigError(
            "no keystore passphrase: set ORACLE_SIGNER_PASSPHRASE_FILE or ORACLE_SIGNER_PASSPHRASE"
        )
    return decrypt_keystore(path, passphrase)
