"""Live alarms on the real ingest pipeline and database (SQLite and the real PostgreSQL): readings
committed by the pipeline raise and clear alarms; a restart, or a crash that skipped the hook, loses no
alarm and raises none twice; leg events gate rules; the signed verdict is the same with alarms on."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.coldchain.excursions import load_alarm_rules, replay_alarms
from oracle.alarms.live import LiveAlarms, record_leg
from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment
from oracle.storage.alarm_tables import AlarmCheckpoint, AlarmEventRow, AlarmRow
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.tables import TelemetryReading
from tests.coldchain.helpers import STEP_S, Fleet, day_ago, temperatures
from tests.outbox.helpers import open_db

RULES = load_alarm_rules("refrigerated")
assert RULES is not None


def _refrigerated(_s: Session, _shipment: str) -> str:
    return "refrigerated"


def _live(sessions: sessionmaker[Session], fleet: Fleet, **kw: object) -> LiveAlarms:
    live = LiveAlarms(sessions, profile_of=_refrigerated, **kw)  # type: ignore[arg-type]
    fleet.ingest.after_commit[:] = [live]
    return live


def _stored(sessions: sessionmaker[Session], shipment: str) -> tuple[list[int], list[float]]:
    with sessions() as s:
        rows = s.execute(
            select(TelemetryReading.ts_ms, TelemetryReading.temp_c)
            .where(TelemetryReading.shipment_id == shipment)
            .order_by(TelemetryReading.ts_ms)
        ).all()
    return [int(t) // 1000 for t, _ in rows], [float(x) for _, x in rows]


def _alarms(sessions: sessionmaker[Session], shipment: str) -> list[tuple[str, int, str, int | None]]:
    with sessions() as s:
        rows = s.scalars(select(AlarmRow).where(AlarmRow.shipment_id == shipment).order_by(AlarmRow.id)).all()
        return sorted((r.rule, r.raised_at_s, r.state, r.cleared_at_s) for r in rows)


def _expected(sessions: sessionmaker[Session], shipment: str) -> list[tuple[str, int, str, int | None]]:
    ts, temps = _stored(sessions, shipment)
    assert RULES is not None
    found: dict[tuple[str, int], tuple[str, int | None]] = {}
    for t in replay_alarms(ts, temps, RULES):
        found[(t.rule, t.raised_at_s)] = ("raised", None) if t.action == "raise" else ("cleared", t.at_s)
    return sorted((rule, raised, state, cleared) for (rule, raised), (state, cleared) in found.items())


# Three excursions: 46 °C for 2 h (hot + above band), 9 °C for 50 min, then 1 °C for 40 min, then back.
SERIES = (
    temperatures(4)
    + [46.0] * 12
    + temperatures(2)
    + [9.0] * 5
    + temperatures(2)
    + [-1.0] * 4
    + temperatures(3)
)


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> tuple[sessionmaker[Session], Fleet, int]:
    sessions = open_db(database_url)
    fleet = Fleet(sessions, FilesystemBlobStore(tmp_path / "blobs"))
    start = day_ago()
    fleet.add("logger-live", "SHP-LIVE", start_s=start)
    return sessions, fleet, start


def test_committed_readings_raise_and_clear_alarms(world: tuple[sessionmaker[Session], Fleet, int]) -> None:
    sessions, fleet, start = world
    _live(sessions, fleet)
    assert fleet.publish("logger-live", SERIES, start_s=start, batch=7) == len(SERIES)
    got = _alarms(sessions, "SHP-LIVE")
    assert got == _expected(sessions, "SHP-LIVE")
    rules = {rule for rule, *_ in got}
    assert {"hot_immediate", "above_band_30m", "above_band_dock_10m", "freezing_immediate"} <= rules
    hot = next(a for a in got if a[0] == "hot_immediate")
    assert hot[1] == start + 24 * STEP_S  # raised by the first 46 °C reading, at its own time
    assert hot[2] == "cleared"  # and cleared by the first reading back in band
    with sessions() as s:
        raised = s.scalar(select(func.count()).where(AlarmEventRow.action == "raised"))
        assert raised == len(got)  # one trail entry per alarm, none twice


def test_restart_and_a_skipped_hook_lose_nothing_and_raise_nothing_twice(
    world: tuple[sessionmaker[Session], Fleet, int],
) -> None:
    sessions, fleet, start = world
    first, second, third = SERIES[:30], SERIES[30:45], SERIES[45:]
    live = _live(sessions, fleet, checkpoint_every=5)
    fleet.publish_from("logger-live", first, first_seq=0, start_s=start, batch=4)
    assert live.active_count() >= 1  # the hot excursion is on
    with sessions() as s:
        assert s.get(AlarmCheckpoint, "SHP-LIVE") is not None
    # A crash after the readings were committed and acknowledged but before the alarm hook ran.
    fleet.ingest.after_commit.clear()
    fleet.publish_from("logger-live", second, first_seq=30, start_s=start + 30 * STEP_S, batch=4)
    # The process comes back: a new evaluator, nothing in memory.
    _live(sessions, fleet, checkpoint_every=5)
    fleet.publish_from("logger-live", third, first_seq=45, start_s=start + 45 * STEP_S, batch=4)
    got = _alarms(sessions, "SHP-LIVE")
    assert got == _expected(sessions, "SHP-LIVE")
    with sessions() as s:
        assert s.scalar(select(func.count()).where(AlarmEventRow.action == "raised")) == len(got)
        assert s.scalar(select(func.count()).where(AlarmEventRow.action == "cleared")) == sum(
            1 for a in got if a[2] == "cleared"
        )


def test_leg_events_gate_rules(world: tuple[sessionmaker[Session], Fleet, int]) -> None:
    sessions, fleet, start = world
    _live(sessions, fleet)
    # In transit from the start: the dock rule (origin and destination only) stays quiet through a
    # 50-minute 9 °C excursion that the 30-minute in-any-leg rule still catches.
    record_leg(sessions, shipment_id="SHP-LIVE", leg="in_transit", at_s=start - 30, by="test")
    fleet.publish("logger-live", temperatures(2) + [9.0] * 5 + temperatures(1), start_s=start, batch=3)
    rules = {a[0] for a in _alarms(sessions, "SHP-LIVE")}
    assert "above_band_30m" in rules
    assert "above_band_dock_10m" not in rules
    # At the destination (a leg event picked up between batches) the dock rule applies again.
    later = start + 9 * 3600
    record_leg(sessions, shipment_id="SHP-LIVE", leg="destination", at_s=later - 60, by="test")
    fleet.publish_from("logger-live", [9.0] * 3 + [5.0], first_seq=100, start_s=later, batch=2)
    assert "above_band_dock_10m" in {a[0] for a in _alarms(sessions, "SHP-LIVE")}


def test_alarms_do_not_change_the_signed_verdict(world: tuple[sessionmaker[Session], Fleet, int]) -> None:
    sessions, fleet, start = world
    fleet.publish("logger-live", SERIES, start_s=start)
    terms = ShipmentTerms(profile="refrigerated")
    before = evaluate_shipment(
        sessions, fleet.ingest.blobs, shipment_id="SHP-LIVE", terms=terms, now=start + 86_000
    )
    live = LiveAlarms(sessions, profile_of=_refrigerated)
    with sessions() as s:
        rows = s.execute(
            select(TelemetryReading.shipment_id, TelemetryReading.ts_ms, TelemetryReading.temp_c)
        ).all()
    assert live.on_committed([(str(a), int(b), float(c)) for a, b, c in rows]) > 0  # alarms were stored
    after = evaluate_shipment(
        sessions, fleet.ingest.blobs, shipment_id="SHP-LIVE", terms=terms, now=start + 86_000
    )
    assert before.report is not None
    assert (after.report, after.manifest_cid) == (before.report, before.manifest_cid)


def test_pipelines_of_one_process_share_one_evaluator_per_shipment(
    world: tuple[sessionmaker[Session], Fleet, int], tmp_path: Path
) -> None:
    """MQTT and HTTP pipelines over one database feed the same evaluator: an excursion whose readings
    arrive half by one, half by the other, is seen whole."""
    from ingest.telemetry.pipeline import TelemetryIngest
    from oracle.alarms.live import attach

    sessions, fleet, start = world
    other = TelemetryIngest(sessions=sessions, blobs=fleet.ingest.blobs, kek=fleet.kek)
    first, second = attach(fleet.ingest, sessions), attach(other, sessions)
    assert first is second
    first.profile_of = _refrigerated
    assert fleet.ingest.after_commit == [first]
    fleet.publish("logger-live", [5.0, 5.0, 9.0, 9.0], start_s=start)  # 9 °C from +20 min
    fleet.ingest = other  # the rest arrives by the other pipeline
    fleet.publish_from("logger-live", [9.0, 9.0, 5.0], first_seq=4, start_s=start + 4 * STEP_S)
    assert "above_band_30m" in {a[0] for a in _alarms(sessions, "SHP-LIVE")}


def test_two_processes_sharing_a_shipment_catch_up_on_each_other(
    world: tuple[sessionmaker[Session], Fleet, int],
) -> None:
    """Two ingest workers (each its own evaluators, as separate processes have) get alternate batches of
    one shipment's readings: each catches up on the other's before evaluating, so the alarms are those
    of the whole record, once each."""
    from ingest.telemetry.pipeline import TelemetryIngest

    sessions, fleet, start = world
    a = fleet.ingest
    b = TelemetryIngest(sessions=sessions, blobs=a.blobs, kek=fleet.kek)
    a.after_commit[:] = [LiveAlarms(sessions, profile_of=_refrigerated)]
    b.after_commit[:] = [LiveAlarms(sessions, profile_of=_refrigerated)]
    for n, first in enumerate(range(0, len(SERIES), 3)):
        fleet.ingest = (a, b)[n % 2]
        fleet.publish_from(
            "logger-live", SERIES[first : first + 3], first_seq=first, start_s=start + first * STEP_S
        )
    got = _alarms(sessions, "SHP-LIVE")
    assert got == _expected(sessions, "SHP-LIVE")
    with sessions() as s:
        assert s.scalar(select(func.count()).where(AlarmEventRow.action == "raised")) == len(got)
