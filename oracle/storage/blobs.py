"""The content store: every input the service uses is stored first, addressed by its IPFS CIDv1.

CIDs use the ``raw`` codec and sha2-256, so a CID names exactly the bytes (``ipfs add --raw-leaves`` of a
single-block file gives the same id). Reading back re-hashes the bytes; a mismatch raises
:class:`~oracle.errors.IntegrityError` naming the CID, never returns corrupt data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from multiformats import CID, multihash

from oracle.errors import IntegrityError, NotFound, ValidationError


def cid_for(data: bytes) -> str:
    """The CIDv1 (base32, raw, sha2-256) of ``data``."""
    return str(CID("base32", 1, "raw", multihash.wrap(hashlib.sha256(data).digest(), "sha2-256")))


def parse_cid(cid: str) -> CID:
    """Decode and check a CID string; only raw/sha2-256 CIDv1 are ours."""
    try:
        c = CID.decode(cid)
    except (ValueError, KeyError) as e:
        raise ValidationError(f"not a CID: {cid!r}", reason="bad_cid") from e
    if c.version != 1 or c.codec.name != "raw" or c.hashfun.name != "sha2-256":
        raise ValidationError(f"unsupported CID {cid}: expected CIDv1 raw sha2-256", reason="bad_cid")
    return c


def verify(cid: str, data: bytes) -> None:
    """Raise IntegrityError unless ``data`` hashes to ``cid``."""
    expected = bytes(parse_cid(cid).raw_digest)
    if hashlib.sha256(data).digest() != expected:
        raise IntegrityError(f"blob {cid} is corrupt: its bytes no longer match its content id")


class BlobStore(Protocol):
    """Content-addressed bytes. ``put`` is idempotent: the same bytes give the same CID, stored once."""

    def put(self, data: bytes) -> str: ...

    def get(self, cid: str) -> bytes: ...

    def has(self, cid: str) -> bool: ...


class FilesystemBlobStore:
    """Blobs as files ``<root>/<2 chars>/<cid>``, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, cid: str) -> Path:
        parse_cid(cid)
        return self.root / cid[-2:] / cid

    def put(self, data: bytes) -> str:
        cid = cid_for(data)
        target = self.path(cid)
        if target.exists():
            return cid
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return cid

    def get(self, cid: str) -> bytes:
        try:
            data = self.path(cid).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {cid} is not in the content store at {self.root}") from None
        verify(cid, data)
        return data

    def has(self, cid: str) -> bool:
        return self.path(cid).exists()

    def quarantine(self, cid: str) -> None:
        """Move a (corrupt) blob aside to ``<root>/quarantine/``, kept for audit, so a good copy can be
        stored under its CID."""
        source = self.path(cid)
        target = self.root / "quarantine" / cid
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(source, target)


class MemoryBlobStore:
    """In-memory store for unit tests; same contract as the filesystem one."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.quarantined: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        cid = cid_for(data)
        self.blobs.setdefault(cid, bytes(data))
        return cid

    def get(self, cid: str) -> bytes:
        parse_cid(cid)
        if cid not in self.blobs:
            raise NotFound(f"blob {cid} is not in the content store")
        data = self.blobs[cid]
        verify(cid, data)
        return data

    def has(self, cid: str) -> bool:
        return cid in self.blobs

    def quarantine(self, cid: str) -> None:
        self.quarantined[cid] = self.blobs.pop(cid, b"")
