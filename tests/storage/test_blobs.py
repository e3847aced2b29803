"""The content store: CIDv1 raw/sha2-256, idempotent puts, corruption detected on read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID

from oracle.errors import IntegrityError, NotFound, ValidationError
from oracle.storage.blobs import FilesystemBlobStore, MemoryBlobStore, cid_for


def test_cid_is_cidv1_raw_sha256_of_the_bytes() -> None:
    cid = cid_for(b"hello")
    # The well-known CIDv1 of "hello" with raw leaves (ipfs add --raw-leaves --cid-version 1).
    assert cid == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    c = CID.decode(cid)
    assert (c.version, c.codec.name, c.hashfun.name) == (1, "raw", "sha2-256")
    assert bytes(c.raw_digest) == hashlib.sha256(b"hello").digest()


@pytest.mark.parametrize("kind", ["fs", "memory"])
def test_put_get_roundtrip_and_idempotence(kind: str, tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path) if kind == "fs" else MemoryBlobStore()
    cid = store.put(b"\x00raster bytes\xff")
    assert store.put(b"\x00raster bytes\xff") == cid
    assert store.has(cid)
    assert store.get(cid) == b"\x00raster bytes\xff"
    with pytest.raises(NotFound):
        store.get(cid_for(b"never stored"))


def test_corrupted_blob_raises_integrity_error(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    cid = store.put(b"precipitation grid")
    path = store.path(cid)
    path.write_bytes(b"precipitation grie")  # one byte flipped on disk
    with pytest.raises(IntegrityError, match=cid):
        store.get(cid)


def test_filesystem_store_leaves_no_temp_files(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    for i in range(20):
        store.put(f"blob {i}".encode())
    assert not list(tmp_path.rglob(".incoming-*"))
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 20


def test_foreign_cids_are_refused(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    with pytest.raises(ValidationError):
        store.get("not-a-cid")
    dag_pb = str(CID.decode(cid_for(b"x")).set(codec="dag-pb"))
    with pytest.raises(ValidationError, match="expected CIDv1 raw"):
        store.get(dag_pb)


@given(st.binary(max_size=4096))
def test_memory_and_filesystem_agree(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        assert FilesystemBlobStore(Path(d)).put(data) == MemoryBlobStore().put(data) == cid_for(data)
