"""Where a replay gets bytes by CID: the content store, a directory of files named by CID, or both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from oracle.errors import NotFound
from oracle.storage.blobs import BlobStore, parse_cid


@dataclass(frozen=True)
class StoreSource:
    """The content store. A blob whose bytes no longer match raises IntegrityError naming its CID."""

    blobs: BlobStore

    def read(self, cid: str) -> bytes:
        return self.blobs.get(cid)


@dataclass(frozen=True)
class DirectorySource:
    """Files ``<root>/<cid>`` (as written by ``oracle export`` and accepted by ``--inputs``)."""

    root: Path

    def read(self, cid: str) -> bytes:
        parse_cid(cid)  # a CID is also a safe file name: no separators, no dots
        try:
            return (self.root / cid).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{cid} is not in {self.root}") from None


@dataclass(frozen=True)
class LayeredSource:
    """The first source that has the CID wins (e.g. ``--inputs`` before the content store)."""

    sources: Sequence[StoreSource | DirectorySource]

    def read(self, cid: str) -> bytes:
        for source in self.sources:
            try:
                return source.read(cid)
            except NotFound:
                continue
        raise NotFound(f"{cid} is in none of the given sources")
