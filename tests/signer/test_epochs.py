"""The epoch memory: SQLite file and in-memory store follow the same rules; the file survives reopening."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from oracle.errors import StorageError
from oracle.signer.epochs import MemoryEpochStore, SqliteEpochStore
from oracle.signer.policy import SigningRefused


class CountingSigner:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return bytes([self.calls]) * 65


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteEpochStore | MemoryEpochStore:
    return SqliteEpochStore(tmp_path / "epochs.sqlite3") if request.param == "sqlite" else MemoryEpochStore()


def test_rules(store: SqliteEpochStore | MemoryEpochStore) -> None:
    s, sign = b"s" * 32, CountingSigner()
    first = store.sign_once(s, 3, b"a" * 32, sign)
    assert (first.epoch, first.signature, sign.calls) == (3, b"\x01" * 65, 1)
    assert store.sign_once(s, 3, b"a" * 32, sign) == first  # idempotent, no new signature made
    assert sign.calls == 1
    with pytest.raises(SigningRefused) as info:
        store.sign_once(s, 3, b"b" * 32, sign)
    assert info.value.reason == "epoch_conflict"
    with pytest.raises(SigningRefused) as info:
        store.sign_once(s, 2, b"c" * 32, sign)
    assert info.value.reason == "stale_epoch"
    store.sign_once(s, 4, b"d" * 32, sign)
    assert store.sign_once(s, 3, b"a" * 32, sign) == first  # a retry of an older identical report
    assert store.latest_epoch(s) == 4
    assert store.latest_epoch(b"t" * 32) is None
    assert sign.calls == 2


def test_full_uint64_range(store: SqliteEpochStore | MemoryEpochStore) -> None:
    s, sign = b"u" * 32, CountingSigner()
    store.sign_once(s, 2**63 - 1, b"a" * 32, sign)
    store.sign_once(s, 2**63, b"b" * 32, sign)
    store.sign_once(s, 2**64 - 1, b"c" * 32, sign)
    assert store.latest_epoch(s) == 2**64 - 1
    with pytest.raises(SigningRefused):
        store.sign_once(s, 2**63 + 5, b"d" * 32, sign)


def test_sqlite_memory_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "epochs.sqlite3"
    s = b"r" * 32
    first = SqliteEpochStore(path)
    rec = first.sign_once(s, 10, b"a" * 32, CountingSigner())
    first.close()
    again = SqliteEpochStore(path)
    assert again.latest_epoch(s) == 10
    assert again.sign_once(s, 10, b"a" * 32, CountingSigner()) == rec
    with pytest.raises(SigningRefused):
        again.sign_once(s, 10, b"z" * 32, CountingSigner())


def test_failed_signing_records_nothing(tmp_path: Path) -> None:
    store = SqliteEpochStore(tmp_path / "epochs.sqlite3")

    def broken() -> bytes:
        raise RuntimeError("hardware wallet unplugged")

    with pytest.raises(RuntimeError):
        store.sign_once(b"f" * 32, 1, b"a" * 32, broken)
    assert store.latest_epoch(b"f" * 32) is None


def test_concurrent_requests_for_one_epoch_sign_once(tmp_path: Path) -> None:
    """Two stores on one file (as two processes would be) racing on the same epoch: one signature."""
    path = tmp_path / "epochs.sqlite3"
    stores = [SqliteEpochStore(path), SqliteEpochStore(path)]
    sign = CountingSigner()
    results: list[object] = []

    def worker(i: int) -> None:
        try:
            results.append(stores[i % 2].sign_once(b"c" * 32, 1, bytes([i]) * 32, sign))
        except SigningRefused as e:
            results.append(e.reason)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sign.calls == 1
    assert sorted(r for r in results if isinstance(r, str)) == ["epoch_conflict"] * 7


def test_unopenable_file_is_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open signer epoch store"):
        SqliteEpochStore(tmp_path / "missing-dir" / "epochs.sqlite3")
