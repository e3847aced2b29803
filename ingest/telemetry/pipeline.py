"""Validate and store a batch of telemetry messages in one transaction: the path MQTT and HTTP share.

:meth:`TelemetryIngest.process` takes raw payloads with the device id they arrived for and returns, per
message, how many readings were stored, how many were redeliveries, and every refusal with its reason.
When it returns, all of it is committed: readings, refusals (``rejects``), and the raw bytes of the
batch's authenticated messages in the content store, indexed as an ``observations`` row of kind
``telemetry_batch`` whose CID each reading and refusal references (chain of custody: an auditor re-verifies
every signature from the stored bytes and the device's public key). A message that is not the device's own
(unknown device, bad signature, revoked or stale key, malformed envelope) is not stored: it leaves one
reject row with its reason and no CID, and a batch of nothing else writes no blob at all.

Only then may the caller acknowledge the messages. A database failure raises StorageError and nothing is
committed, so the caller keeps the messages unacknowledged and retries.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
from sqlalchemy import FromClause, Table, column, func, insert, select, table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from ingest.telemetry import metrics
from ingest.telemetry.authn import check_envelope
from ingest.telemetry.envelope import (
    EnvelopeError,
    Reading,
    RejectReason,
    canonical_items,
    mac_key,
    parse_envelope,
    validate_reading,
)
from oracle.devices import DEVICE_ID_RE, DeviceCredentials, Kek, load_credentials
from oracle.errors import OracleError
from oracle.storage import partitions
from oracle.storage.blobs import BlobStore
from oracle.storage.db import transaction
from oracle.storage.tables import Blob, Observation, Reject, TelemetryReading

logger = logging.getLogger(__name__)

BATCH_MEDIA_TYPE = "application/vnd.oracle.telemetry-batch+cbor"
"""CBOR array of ``{"device": str, "source": str, "received_ms": int, "payload": bytes}``, in order."""

_KEY_CHUNK = 400  # (device, seq) pairs per IN query: far below every backend's parameter limit

_READING_COLUMNS = (
    "device_id",
    "seq",
    "ts_ms",
    "shipment_id",
    "temp_c",
    "humidity_pct",
    "door_open",
    "battery_pct",
    "lat",
    "lon",
    "digest",
    "batch_cid",
    "source",
    "received_ms",
)


@dataclass(frozen=True)
class IncomingMessage:
    """A raw payload as received. ``device_id`` comes from the MQTT topic or the HTTP path."""

    device_id: str
    payload: bytes
    source: str = "mqtt"
    received_ms: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass(frozen=True)
class RejectRecord:
    device_id: str
    reason: RejectReason
    message: str
    seq: int | None = None


@dataclass(frozen=True)
class MessageOutcome:
    accepted: int
    duplicates: int
    rejects: tuple[RejectRecord, ...]


@dataclass(frozen=True)
class BatchOutcome:
    cid: str
    """The stored batch's CID; empty when no message of the batch was authenticated (nothing stored)."""
    messages: tuple[MessageOutcome, ...]

    @property
    def accepted(self) -> int:
        return sum(m.accepted for m in self.messages)

    @property
    def duplicates(self) -> int:
        return sum(m.duplicates for m in self.messages)

    @property
    def rejected(self) -> int:
        return sum(len(m.rejects) for m in self.messages)


@dataclass
class _Cached:
    creds: DeviceCredentials | None
    loaded: float
    newest_ts_ms: int | None
    mac: hmac.HMAC | None = None
    """The device's keyed HMAC, copied per message (keying costs two hash blocks each time otherwise)."""


@dataclass
class _Candidate:
    msg_index: int
    device_id: str
    shipment_id: str
    reading: Reading


class TelemetryIngest:
    """Thread-safe: the MQTT writer thread and HTTP request threads may call :meth:`process` at once.

    Device keys (public keys, or a legacy HS256 device's decrypted secret) are loaded once and cached
    ``cache_ttl_s`` seconds (unknown devices ``negative_ttl_s``), so a rotation, a revocation or a new
    binding takes effect within that time.
    """

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        kek: Kek,
        max_future_skew_s: int = 300,
        reorder_window_s: int = 7 * 24 * 3600,
        cache_ttl_s: float = 30.0,
        negative_ttl_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.blobs = blobs
        self.kek = kek
        self.max_future_skew_ms = max_future_skew_s * 1000
        self.reorder_window_ms = reorder_window_s * 1000
        self.cache_ttl_s = cache_ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self.count_metrics = True
        #: Called after each commit with the readings stored by it, as (shipment id, ts ms, °C); a failing
        #: hook is logged, never raised: the readings are committed whatever it does (live alarms use it).
        self.after_commit: list[Callable[[list[tuple[str, int, float]]], None]] = []
        self._partitioned: bool | None = None  # readings partitioned by month (PostgreSQL); None: not known
        self._months: set[int] = set()  # months known to have their partition

    # --- devices ---------------------------------------------------------------------------------------

    def _device(self, device_id: str) -> _Cached:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(device_id)
        if hit is not None:
            ttl = self.cache_ttl_s if hit.creds is not None else self.negative_ttl_s
            if now - hit.loaded < ttl:
                return hit
        with transaction(self.sessions) as s:
            creds = load_credentials(s, self.kek, device_id)
            newest = None
            if creds is not None:
                # On PostgreSQL the key table answers from its primary key, whatever the number of months.
                keyed = _key_table(s)
                newest = s.scalar(select(func.max(keyed.c.ts_ms)).where(keyed.c.device_id == device_id))
        mac = mac_key(creds.secret) if creds is not None and creds.secret is not None else None
        entry = _Cached(creds, now, newest, mac)
        with self._lock:
            old = self._cache.get(device_id)
            if old is not None and old.newest_ts_ms is not None:
                entry.newest_ts_ms = max(old.newest_ts_ms, entry.newest_ts_ms or old.newest_ts_ms)
            self._cache[device_id] = entry
        return entry

    def forget(self, device_id: str | None = None) -> None:
        """Drop cached credentials (all when ``device_id`` is None), e.g. right after a revocation."""
        with self._lock:
            if device_id is None:
                self._cache.clear()
            else:
                self._cache.pop(device_id, None)

    # --- the batch -------------------------------------------------------------------------------------

    def process(self, messages: Sequence[IncomingMessage]) -> BatchOutcome:
        """Validate, store and commit ``messages``; see the module docstring. Raises StorageError."""
        started = time.perf_counter()
        now_ms = int(self.clock() * 1000)
        rejects: list[list[RejectRecord]] = [[] for _ in messages]
        accepted = [0] * len(messages)
        dups = [0] * len(messages)
        candidates: dict[tuple[str, int], _Candidate] = {}
        newest_seen: dict[str, int] = {}
        stored_at: dict[int, int] = {}  # message index -> its position in the stored batch
        committed: list[tuple[str, int, float]] = []

        judged = []
        for i, m in enumerate(messages):
            authentic, found = self._judge(i, m, now_ms, rejects[i])
            if authentic:
                stored_at[i] = len(stored_at)
            judged.append(found)
        # Only what the devices really signed goes into the content store.
        blob = b""
        cid = ""
        if stored_at:
            blob = cbor2.dumps(
                [
                    {
                        "device": m.device_id,
                        "source": m.source,
                        "received_ms": m.received_ms,
                        "payload": m.payload,
                    }
                    for i, m in enumerate(messages)
                    if i in stored_at
                ]
            )
            cid = self.blobs.put(blob)

        for i, found in enumerate(judged):
            for c in found:
                key = (c.device_id, c.reading.seq)
                prior = candidates.get(key)
                if prior is None:
                    candidates[key] = c
                elif prior.reading.digest == c.reading.digest:
                    dups[i] += 1
                else:
                    rejects[i].append(_replay(c))

        self._ensure_partitions(candidates.values())
        with transaction(self.sessions) as s:
            cursor, mark = _raw_cursor(s)
            keys = _KEYS if s.get_bind().dialect.name == "postgresql" else _READINGS

            def accept(c: _Candidate) -> None:
                accepted[c.msg_index] += 1
                committed.append((c.shipment_id, c.reading.ts_ms, c.reading.temp_c))
                prev = newest_seen.get(c.device_id)
                newest_seen[c.device_id] = max(prev or 0, c.reading.ts_ms)

            try:
                if keys is _KEYS:
                    # PostgreSQL: claim every key of the batch in one statement and COPY the readings
                    # whose key was free; only the keys someone else holds are then looked up, to tell
                    # a redelivery (same digest) from a replay (another reading under a used seq).
                    ours = _claim_and_copy(cursor, list(candidates.values()), cid, messages)
                    taken = [key for key in candidates if key not in ours]
                    held = _existing_digests(cursor, mark, taken, keys) if taken else {}
                    for key, c in candidates.items():
                        if key in ours:
                            accept(c)
                        elif held.get(key, ("", ""))[0] == c.reading.digest:
                            dups[c.msg_index] += 1
                        else:
                            rejects[c.msg_index].append(_replay(c))
                else:
                    # SQLite: look the keys up, insert the rest with ON CONFLICT DO NOTHING.
                    stored = _existing_digests(cursor, mark, list(candidates), keys)
                    fresh: list[_Candidate] = []
                    for key, c in candidates.items():
                        row = stored.get(key)
                        if row is None:
                            fresh.append(c)
                        elif row[0] == c.reading.digest:
                            dups[c.msg_index] += 1
                        else:
                            rejects[c.msg_index].append(_replay(c))
                    if fresh:
                        inserted = _insert_readings(cursor, mark, fresh, cid, messages)
                        if inserted == len(fresh):  # every row is ours: the common case needs no re-read
                            after = {(c.device_id, c.reading.seq): (c.reading.digest, cid) for c in fresh}
                        else:
                            # A concurrent writer committed some (device, seq) in between: its row wins
                            # (ON CONFLICT DO NOTHING), and ours is a duplicate or a replay by content.
                            after = _existing_digests(
                                cursor, mark, [(c.device_id, c.reading.seq) for c in fresh], keys
                            )
                        for c in fresh:
                            digest, batch_cid = after.get((c.device_id, c.reading.seq), ("", ""))
                            if digest != c.reading.digest:
                                rejects[c.msg_index].append(_replay(c))
                            elif batch_cid != cid:  # stored by the other writer: ours is a redelivery
                                dups[c.msg_index] += 1
                            else:
                                accept(c)
                self._record_batch(
                    s,
                    cid,
                    len(blob),
                    messages,
                    rejects,
                    sum(accepted),
                    stored_at,
                    cursor=cursor if keys is _KEYS else None,
                )
            finally:
                cursor.close()
        for hook in self.after_commit if committed else ():
            try:
                hook(committed)
            except Exception:
                logger.exception("after-commit hook %r failed on %d readings", hook, len(committed))

        with self._lock:
            for device_id, ts in newest_seen.items():
                entry = self._cache.get(device_id)
                if entry is not None and (entry.newest_ts_ms is None or ts > entry.newest_ts_ms):
                    entry.newest_ts_ms = ts
        outcome = BatchOutcome(
            cid=cid,
            messages=tuple(
                MessageOutcome(accepted[i], dups[i], tuple(rejects[i])) for i in range(len(messages))
            ),
        )
        if self.count_metrics:
            self.record_metrics(messages, outcome, time.perf_counter() - started)
        return outcome

    def _judge(
        self, index: int, m: IncomingMessage, now_ms: int, rejects: list[RejectRecord]
    ) -> tuple[bool, list[_Candidate]]:
        """Envelope- and reading-level checks before the database: (authenticated, readings worth storing).

        ``authenticated``: the envelope is signed by the device's own key (only such messages are stored)."""
        device_id = m.device_id
        if not DEVICE_ID_RE.fullmatch(device_id):
            rejects.append(
                RejectRecord(device_id[:120], RejectReason.MALFORMED, "device id is not a valid topic level")
            )
            return False, []
        try:
            env = parse_envelope(m.payload)
        except EnvelopeError as e:
            rejects.append(RejectRecord(device_id, e.code, str(e)))
            return False, []
        try:
            entry = self._device(device_id)
        except OracleError as e:  # wrong KEK, tampered secret or key row: refuse, and say why in the log
            logger.error("device %s credentials unusable: %s", device_id, e)
            rejects.append(RejectRecord(device_id, RejectReason.UNKNOWN_DEVICE, f"credentials unusable: {e}"))
            return False, []
        creds = entry.creds
        if creds is None:
            rejects.append(RejectRecord(device_id, RejectReason.UNKNOWN_DEVICE, "device is not registered"))
            return False, []
        canonical = canonical_items(env)
        refusal = check_envelope(creds, entry.mac, env, canonical[0] if canonical is not None else None)
        if refusal is not None or canonical is None:
            reason, message = refusal or (RejectReason.BAD_SIGNATURE, "body cannot be re-serialised")
            rejects.append(RejectRecord(device_id, reason, message))
            return False, []
        out: list[_Candidate] = []
        newest = entry.newest_ts_ms
        for item, item_bytes in zip(env.items, canonical[1], strict=True):
            try:
                r = validate_reading(item, item_bytes)
            except EnvelopeError as e:
                seq = item.get("seq") if isinstance(item, dict) else None
                seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
                rejects.append(RejectRecord(device_id, e.code, str(e), seq))
                continue
            if r.ts_ms > now_ms + self.max_future_skew_ms:
                rejects.append(
                    RejectRecord(
                        device_id,
                        RejectReason.FUTURE_TIMESTAMP,
                        f"ts {r.ts_ms} is {(r.ts_ms - now_ms) / 1000:.0f} s ahead of the oracle's clock",
                        r.seq,
                    )
                )
                continue
            if newest is not None and r.ts_ms < newest - self.reorder_window_ms:
                rejects.append(
                    RejectRecord(
                        device_id,
                        RejectReason.OUT_OF_WINDOW,
                        f"ts {r.ts_ms} is {(newest - r.ts_ms) / 1000:.0f} s older than the newest one",
                        r.seq,
                    )
                )
                continue
            shipment = creds.shipment_at(r.ts_ms)
            if shipment is None:
                rejects.append(
                    RejectRecord(
                        device_id,
                        RejectReason.UNBOUND_DEVICE,
                        f"no shipment binding covers ts {r.ts_ms}",
                        r.seq,
                    )
                )
                continue
            out.append(_Candidate(index, device_id, shipment, r))
        return True, out

    def _ensure_partitions(self, candidates: Any) -> None:
        """On PostgreSQL, create the month partitions these readings need before they are inserted (the
        default partition would take them, but a month's partition is what retention can drop)."""
        if self._partitioned is False:
            return  # SQLite, or readings not partitioned
        needed = {partitions.month_of(c.reading.ts_ms) for c in candidates}
        if self._partitioned and needed <= self._months:
            return
        engine = self.sessions.kw["bind"]
        with engine.connect() as conn:
            self._partitioned = partitions.is_partitioned(conn)
            if not self._partitioned:
                return
            self._months = partitions.existing_months(conn)
        for month in sorted(needed - self._months):
            partitions.ensure_month(engine, month)
            self._months.add(month)

    # --- SQL -------------------------------------------------------------------------------------------

    @staticmethod
    def _insert_ignore(s: Session, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
        if not rows:
            return
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
        elif dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported backends
            stmt = insert(table)
        s.execute(stmt, rows)

    def _record_batch(
        self,
        s: Session,
        cid: str,
        size: int,
        messages: Sequence[IncomingMessage],
        rejects: list[list[RejectRecord]],
        accepted: int,
        stored_at: dict[int, int],
        *,
        cursor: Any = None,
    ) -> None:
        """The batch's blob and observation rows and its refusals; ``cursor``: the session's own
        PostgreSQL cursor, which sends the two batch rows in one round trip (psycopg pipeline)."""
        now = dt.datetime.now(dt.UTC)
        if cid:
            stored = [m for i, m in enumerate(messages) if i in stored_at]
            if cursor is not None:
                _insert_batch_rows(cursor, cid, size, stored, now, accepted)
            else:
                self._insert_blob_rows(s, cid, size, stored, now, accepted)
        reject_rows = [
            {
                "source": messages[i].source,
                "reason": r.reason.value,
                "message": r.message[:2000],
                "subject": r.device_id[:120],
                # A message that was not stored has no CID; the row is all it leaves (bounded message).
                "cid": cid if i in stored_at else None,
                "received_at": now,
                "meta": _reject_meta(r, stored_at.get(i)),
            }
            for i, rs in enumerate(rejects)
            for r in rs
        ]
        if reject_rows:
            s.execute(insert(Reject.__table__), reject_rows)  # type: ignore[arg-type]

    def _insert_blob_rows(
        self,
        s: Session,
        cid: str,
        size: int,
        stored: Sequence[IncomingMessage],
        now: dt.datetime,
        accepted: int,
    ) -> None:
        self._insert_ignore(
            s,
            Blob.__table__,  # type: ignore[arg-type]
            [{"cid": cid, "size": size, "media_type": BATCH_MEDIA_TYPE, "created_at": now}],
            ["cid"],
        )
        self._insert_ignore(
            s,
            Observation.__table__,  # type: ignore[arg-type]
            [_observation_row(cid, stored, now, accepted)],
            ["kind", "cid"],
        )

    @staticmethod
    def record_metrics(messages: Sequence[IncomingMessage], outcome: BatchOutcome, seconds: float) -> None:
        """Count a committed batch in the Prometheus metrics (``seconds``: its validate-and-commit time).

        :meth:`process` does it itself unless ``count_metrics`` is off (a writer process whose caller
        serves the metrics counts the outcomes it gets back instead)."""
        metrics.BATCH_SECONDS.observe(seconds)
        # Summed per label first: one counter update per label and batch instead of several per message.
        sums: Counter[tuple[str, str]] = Counter()
        for m, o in zip(messages, outcome.messages, strict=True):
            sums[("m", m.source)] += 1
            sums[("a", m.source)] += o.accepted
            sums[("d", m.source)] += o.duplicates
            for r in o.rejects:
                sums[(r.reason.value, m.source)] += 1
        for (what, source), n in sums.items():
            if what == "m":
                metrics.MESSAGES.labels(source).inc(n)
            elif what == "a":
                if n:
                    metrics.READINGS_ACCEPTED.labels(source).inc(n)
            elif what == "d":
                if n:
                    metrics.READINGS_DUPLICATE.labels(source).inc(n)
            else:
                metrics.REJECTS.labels(source, what).inc(n)


def _observation_row(
    cid: str, stored: Sequence[IncomingMessage], now: dt.datetime, accepted: int
) -> dict[str, Any]:
    """The ``observations`` row of a stored batch."""
    return {
        "kind": "telemetry_batch",
        "variable": "",
        "subject": stored[0].device_id if len({m.device_id for m in stored}) == 1 else "",
        "cid": cid,
        "source": ",".join(sorted({m.source for m in stored})),
        "collector": "ingest.telemetry",
        "signature_status": "verified",
        "observed_at": now,
        "received_at": now,
        "meta": {"messages": len(stored), "accepted": accepted},
    }


def _reject_meta(r: RejectRecord, position: int | None) -> dict[str, Any]:
    """``seq`` when known, ``message_index`` (position in the stored batch) when the message was stored."""
    meta: dict[str, Any] = {}
    if r.seq is not None:
        meta["seq"] = r.seq
    if position is not None:
        meta["message_index"] = position
    return meta


def _replay(c: _Candidate) -> RejectRecord:
    return RejectRecord(
        c.device_id,
        RejectReason.REPLAY,
        f"seq {c.reading.seq} was already used for a reading with different content",
        c.reading.seq,
    )


# --- SQL on the session's own DBAPI connection ------------------------------------------------------------
# The hot statements bypass SQLAlchemy's per-row parameter processing (most of a batch's cost otherwise);
# they run on the session's connection, inside its transaction. Both backends accept the same SQL
# (row-value IN, ON CONFLICT DO NOTHING); only the placeholder differs.


def _raw_cursor(s: Session) -> tuple[Any, str]:
    conn = s.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return conn.connection.cursor(), mark


_READINGS = "telemetry_readings"
_KEYS = partitions.KEYS  # PostgreSQL: the idempotency keys of the partitioned readings (migration 0007)


_KEY_TABLE = table(_KEYS, column("device_id"), column("ts_ms"))


def _key_table(s: Session) -> FromClause:
    """The table that holds (device_id, seq, ts_ms) once per reading, indexed by device_id."""
    if s.get_bind().dialect.name == "postgresql":
        return _KEY_TABLE
    return TelemetryReading.__table__


def _existing_digests(
    cursor: Any, mark: str, keys: list[tuple[str, int]], source: str
) -> dict[tuple[str, int], tuple[str, str]]:
    """(digest, batch CID) of the stored readings among ``keys``, read from ``source``: the readings on
    SQLite, their key table on PostgreSQL."""
    found: dict[tuple[str, int], tuple[str, str]] = {}
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        pairs = ",".join([f"({mark},{mark})"] * len(chunk))
        # A join against the keys, not a row-value IN: SQLite plans the IN as a scan of the whole table.
        sql = (
            f"WITH k(d, s) AS (VALUES {pairs}) "  # noqa: S608 - only placeholders are interpolated
            "SELECT r.device_id, r.seq, r.digest, r.batch_cid FROM k "
            f"JOIN {source} r ON r.device_id = k.d AND r.seq = k.s"
        )
        cursor.execute(sql, [v for key in chunk for v in key])
        for device_id, seq, digest, batch_cid in cursor.fetchall():
            found[(device_id, seq)] = (digest, batch_cid)
    return found


_INSERT_READING = f"INSERT INTO telemetry_readings ({', '.join(_READING_COLUMNS)}) VALUES ({{marks}})"  # noqa: S608
#: SQLite: the unique (device_id, seq) skips a taken key. PostgreSQL: ``partitions.CLAIM_KEYS`` does.
_ON_CONFLICT = " ON CONFLICT (device_id, seq) DO NOTHING"
_COPY_READINGS = f"COPY telemetry_readings ({', '.join(_READING_COLUMNS)}) FROM STDIN"


def _rows(fresh: list[_Candidate], cid: str, messages: Sequence[IncomingMessage]) -> list[tuple[Any, ...]]:
    rows = []
    for c in fresh:
        r = c.reading
        m = messages[c.msg_index]
        rows.append(
            (
                c.device_id,
                r.seq,
                r.ts_ms,
                c.shipment_id,
                r.temp_c,
                r.humidity_pct,
                r.door_open,
                r.battery_pct,
                r.lat,
                r.lon,
                r.digest,
                cid,
                m.source,
                m.received_ms,
            )
        )
    return rows


def _insert_readings(
    cursor: Any, mark: str, fresh: list[_Candidate], cid: str, messages: Sequence[IncomingMessage]
) -> int:
    """SQLite: insert ``fresh``, skipping taken keys; returns the rows inserted, or -1 if unknown."""
    rows = _rows(fresh, cid, messages)
    cursor.executemany(
        _INSERT_READING.format(marks=",".join([mark] * len(_READING_COLUMNS))) + _ON_CONFLICT, rows
    )
    count = cursor.rowcount
    return int(count) if isinstance(count, int) else -1


def _claim_and_copy(
    cursor: Any, candidates: list[_Candidate], cid: str, messages: Sequence[IncomingMessage]
) -> set[tuple[str, int]]:
    """PostgreSQL: claim the candidates' (device_id, seq) keys in one set-based statement
    (``partitions.CLAIM_KEYS``), then COPY (about 1.6x the rows/s of executemany here) only the readings
    whose key this transaction now holds. Returns those keys. A key another transaction holds is not
    returned, after waiting for that transaction if it has not committed yet (the key table's primary
    key serialises the two), so a reading is stored once across months and across workers."""
    if not candidates:
        return set()
    rows = _rows(candidates, cid, messages)
    # The four arrays go as array literals made here (PostgreSQL parses them in C), not as Python lists
    # psycopg would adapt element by element: a quarter of the claim's client time per batch.
    cursor.execute(
        partitions.CLAIM_KEYS,
        (
            cid,
            _text_array([r[0] for r in rows]),
            _int_array([r[1] for r in rows]),
            _int_array([r[2] for r in rows]),
            _text_array([r[10] for r in rows]),
        ),
    )
    claimed = {(str(d), int(q)) for d, q in cursor.fetchall()}
    if claimed:
        with cursor.copy(_COPY_READINGS) as copy:
            for row in rows:
                if (row[0], row[1]) in claimed:
                    copy.write_row(row)
    return claimed


def _text_array(values: list[str]) -> str:
    """A PostgreSQL array literal of ``values``: every element double-quoted (so ``NULL`` stays text),
    backslashes and quotes escaped."""
    if not values:
        return "{}"
    quoted = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return '{"' + '","'.join(quoted) + '"}'


def _int_array(values: list[int]) -> str:
    """A PostgreSQL array literal of integers."""
    return "{" + ",".join([str(int(v)) for v in values]) + "}"


_BATCH_BLOB = (
    f"INSERT INTO {Blob.__tablename__} (cid, size, media_type, created_at) "  # noqa: S608 - constants only
    "VALUES (%s, %s, %s, %s) ON CONFLICT (cid) DO NOTHING"
)
_OBSERVATION_COLUMNS = (
    "kind",
    "variable",
    "subject",
    "cid",
    "source",
    "collector",
    "signature_status",
    "observed_at",
    "received_at",
    "meta",
)
_BATCH_OBSERVATION = (
    f"INSERT INTO {Observation.__tablename__} ({', '.join(_OBSERVATION_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(['%s'] * (len(_OBSERVATION_COLUMNS) - 1))}, %s::json) "
    "ON CONFLICT (kind, cid) DO NOTHING"
)


def _insert_batch_rows(
    cursor: Any, cid: str, size: int, stored: Sequence[IncomingMessage], now: dt.datetime, accepted: int
) -> None:
    """PostgreSQL: the batch's ``blobs`` and ``observations`` rows (each skipped if already there, as the
    SQLAlchemy route does), sent together in one pipeline: one round trip instead of two, and no
    statement compilation."""
    row = _observation_row(cid, stored, now, accepted)
    values = [row[c] for c in _OBSERVATION_COLUMNS]
    values[-1] = json.dumps(row["meta"])
    with cursor.connection.pipeline():
        cursor.execute(_BATCH_BLOB, (cid, size, BATCH_MEDIA_TYPE, now))
        cursor.execute(_BATCH_OBSERVATION, values)
