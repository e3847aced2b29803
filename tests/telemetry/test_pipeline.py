"""The shared validate-and-store path on SQLite and the real PostgreSQL: every reject reason, idempotency,
replays, out-of-order readings and the chain of custody through the content store."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
from sqlalchemy import select

from ingest.telemetry import IncomingMessage, RejectReason, sign_envelope
from oracle.devices import Kek, revoke_device
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.tables import Observation, Reject, TelemetryReading

from .conftest import START, Db, add_device, make_ingest, now_ms, reading


def _msg(device: str, body: object, secret: bytes, source: str = "mqtt") -> IncomingMessage:
    return IncomingMessage(device, json.dumps(sign_envelope(body, secret)).encode(), source)


def test_batch_is_stored_with_its_envelopes_in_the_content_store(db: Db, kek: Kek, tmp_path: Path) -> None:
    secret = add_device(db, kek, "dev-a", "SHP-A")
    ingest = make_ingest(db, kek, tmp_path)
    t = now_ms()
    msgs = [
        _msg("dev-a", [reading(1, t - 3000, 4.0), reading(2, t - 2000, 4.5, door_open=True)], secret),
        _msg("dev-a", reading(3, t - 1000, 5.25, humidity_pct=40, battery_pct=90, lat=1.5, lon=2.5), secret),
    ]
    out = ingest.process(msgs)
    assert (out.accepted, out.duplicates, out.rejected) == (3, 0, 0)
    with db.sessions() as s:
        rows = s.scalars(select(TelemetryReading).order_by(TelemetryReading.seq)).all()
        obs = s.scalars(select(Observation).where(Observation.cid == out.cid)).one()
    assert [(r.seq, r.temp_c, r.shipment_id, r.batch_cid) for r in rows] == [
        (1, 4.0, "SHP-A", out.cid),
        (2, 4.5, "SHP-A", out.cid),
        (3, 5.25, "SHP-A", out.cid),
    ]
    assert rows[1].door_open is True
    assert rows[2].lat == 1.5
    assert rows[0].humidity_pct is None
    assert obs.kind == "telemetry_batch"
    assert obs.meta == {"messages": 2, "accepted": 3}
    stored = cbor2.loads(FilesystemBlobStore(tmp_path / "blobs").get(out.cid))
    assert [e["payload"] for e in stored] == [m.payload for m in msgs]


def test_redelivery_is_idempotent_and_a_reused_seq_is_a_replay(db: Db, kek: Kek, tmp_path: Path) -> None:
    secret = add_device(db, kek, "dev-b")
    ingest = make_ingest(db, kek, tmp_path)
    t = now_ms()
    first = _msg("dev-b", [reading(1, t, 4.0), reading(2, t + 1, 4.1)], secret)
    assert ingest.process([first]).accepted == 2
    again = ingest.process([first, first])  # redelivered twice, once inside one batch
    assert (again.accepted, again.duplicates, again.rejected) == (0, 4, 0)
    forged = ingest.process([_msg("dev-b", reading(2, t + 1, 9.9), secret)])
    assert forged.accepted == 0
    assert [(r.reason, r.seq) for r in forged.messages[0].rejects] == [(RejectReason.REPLAY, 2)]
    in_batch = ingest.process([_msg("dev-b", [reading(5, t, 1.0), reading(5, t, 2.0)], secret)])
    assert [r.reason for r in in_batch.messages[0].rejects] == [RejectReason.REPLAY]
    assert db.count_readings("dev-b") == 3
    with db.sessions() as s:
        assert s.scalar(select(TelemetryReading.temp_c).where(TelemetryReading.seq == 2)) == 4.1


def test_out_of_order_inside_the_window_is_accepted_and_older_is_refused(
    db: Db, kek: Kek, tmp_path: Path
) -> None:
    secret = add_device(db, kek, "dev-c")
    ingest = make_ingest(db, kek, tmp_path, reorder_window_s=3600)
    t = now_ms()
    assert ingest.process([_msg("dev-c", reading(10, t), secret)]).accepted == 1
    late = ingest.process([_msg("dev-c", [reading(9, t - 600_000), reading(8, t - 3_700_000)], secret)])
    assert late.accepted == 1
    assert [(r.reason, r.seq) for r in late.messages[0].rejects] == [(RejectReason.OUT_OF_WINDOW, 8)]


def test_every_reject_reason_is_recorded_with_the_device_and_payload_cid(
    db: Db, kek: Kek, tmp_path: Path
) -> None:
    secret = add_device(db, kek, "dev-d", valid_from=START, valid_to=START.replace(year=2030))
    add_device(db, kek, "dev-gone")
    revoke_device(db.sessions, "dev-gone")
    ingest = make_ingest(db, kek, tmp_path, max_future_skew_s=60)
    t = now_ms()
    start_ms = int(START.timestamp() * 1000)
    msgs = [
        IncomingMessage("dev-d", b"{oops", "mqtt"),
        IncomingMessage("bad+id", b"{}", "mqtt"),
        IncomingMessage("dev-d", b" " * 300_000, "mqtt"),
        IncomingMessage("dev-d", json.dumps({"body": reading(1, t), "sig": "00" * 32}).encode(), "mqtt"),
        _msg("nobody", reading(1, t), secret),
        _msg("dev-gone", reading(1, t), secret),
        _msg(
            "dev-d",
            [
                reading(1, start_ms - 1),  # before the binding
                reading(2, t + 120_000),  # two minutes in the future
                reading(3, t, 150.0),  # a broken probe
                {"seq": 4, "ts": t},  # schema
                reading(5, t, 4.0),  # fine
            ],
            secret,
        ),
    ]
    out = ingest.process(msgs)
    assert out.accepted == 1
    got = [[r.reason.value for r in m.rejects] for m in out.messages]
    assert got == [
        ["malformed"],
        ["malformed"],
        ["too_large"],
        ["bad_signature"],
        ["unknown_device"],
        ["revoked_key"],
        ["unbound_device", "future_timestamp", "sensor_fault", "malformed"],
    ]
    with db.sessions() as s:
        rows = s.scalars(select(Reject).order_by(Reject.id)).all()
    assert [r.reason for r in rows] == [x for m in got for x in m]
    # Only the one authenticated message is stored; the others leave a reject row without a CID.
    assert [r.cid for r in rows] == [None] * 6 + [out.cid] * 4
    assert {r.source for r in rows} == {"mqtt"}
    assert rows[4].subject == "nobody"
    assert rows[6].meta == {"seq": 1, "message_index": 0}
    assert all(r.message for r in rows)


def test_a_new_binding_is_used_for_readings_in_its_window(db: Db, kek: Kek, tmp_path: Path) -> None:
    from oracle.devices import bind_device

    secret = add_device(db, kek, "dev-e", "SHP-1", valid_to=START.replace(year=2021))
    bind_device(db.sessions, device_id="dev-e", shipment_id="SHP-2", valid_from=START.replace(year=2022))
    ingest = make_ingest(db, kek, tmp_path)
    ts_2020 = int(START.replace(month=6).timestamp() * 1000)
    out = ingest.process([_msg("dev-e", [reading(1, ts_2020), reading(2, now_ms())], secret)])
    assert out.accepted == 2
    with db.sessions() as s:
        assert list(s.scalars(select(TelemetryReading.shipment_id).order_by(TelemetryReading.seq))) == [
            "SHP-1",
            "SHP-2",
        ]


def test_a_row_committed_between_check_and_insert_is_a_duplicate_or_a_replay(
    db: Db, kek: Kek, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker commits the same (device, seq) after our pre-check: ON CONFLICT keeps its row, and
    the insert count (not a re-read of every row) tells us which of ours were not stored. PostgreSQL
    has no pre-check: it claims every key of the batch at once and looks up only the keys it did not get."""
    from ingest.telemetry import pipeline

    secret = add_device(db, kek, "dev-race")
    t = now_ms()
    other = make_ingest(db, kek, tmp_path)
    assert other.process([_msg("dev-race", [reading(1, t, 4.0), reading(2, t, 4.0)], secret)]).accepted == 2
    real = pipeline._existing_digests
    calls = []
    pg = db.engine.dialect.name == "postgresql"

    def blind_first_check(
        cursor: object, mark: str, keys: list[tuple[str, int]], source: str
    ) -> dict[tuple[str, int], str]:
        calls.append(len(keys))
        if pg:
            return real(cursor, mark, keys, source)
        return {} if len(calls) == 1 else real(cursor, mark, keys, source)  # the pre-check saw nothing yet

    monkeypatch.setattr(pipeline, "_existing_digests", blind_first_check)
    ours = make_ingest(db, kek, tmp_path)
    body = [reading(1, t, 4.0), reading(2, t, 9.0), reading(3, t, 4.0)]  # same, different, new
    out = ours.process([_msg("dev-race", body, secret)])
    assert (out.accepted, out.duplicates) == (1, 1)
    assert [(r.reason, r.seq) for r in out.messages[0].rejects] == [(RejectReason.REPLAY, 2)]
    # The re-read happened because fewer rows were inserted than offered (PostgreSQL: of the 2 taken keys).
    assert calls == ([2] if pg else [3, 3])
    assert db.count_readings("dev-race") == 3
    monkeypatch.undo()
    fresh = ours.process([_msg("dev-race", reading(4, t, 4.0), secret)])
    assert fresh.accepted == 1
