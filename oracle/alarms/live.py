"""The live alarm path: readings the telemetry pipeline has committed feed each shipment's
:class:`~models.coldchain.excursions.AlarmEvaluator`; its transitions are stored and queued for webhooks.

Cost per reading is O(rules): evaluators stay in memory (one per shipment seen), and the database is
touched per batch, not per reading: one indexed look-up of new leg events, the transitions (rare), and a
checkpoint of a shipment's evaluator every ``checkpoint_every`` of its readings (or at once with a
transition).

Restarts lose nothing and raise nothing twice. A shipment's evaluator is restored from its checkpoint and
then fed, from ``telemetry_readings``, every reading committed after the checkpoint (including any whose
evaluation a crash cut short: they were committed, and acknowledged, before this hook ran). Transitions
are a pure function of the readings and legs, so a replay yields the same ones, and the alarm's identity
``(shipment, rule, raised_at_s)`` makes storing them again a no-op. A batch whose alarm transaction fails
drops the touched evaluators, which the next batch restores the same way.

Several processes (ingest workers sharing a subscription, the HTTP route) may receive one shipment's
readings: before evaluating a batch, one query per batch finds the shipments with stored readings
between their evaluator's last reading and the batch (another process's), and those evaluators catch up
from the stored readings first; a checkpoint never goes back to an older state. Readings committed by two
processes at the same moment may still be evaluated in different orders by each (both results are
stored; the identity keeps each alarm once). In one process every pipeline shares one evaluator per
shipment (:func:`attach`). Two readings of a
shipment in the same second: the first one committed counts. The shipment's profile comes from its escrow
(``shipments`` table); a shipment without one, or whose profile has no alarm file, raises no alarm.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from models.coldchain.excursions import (
    ALARM_DIR,
    AlarmEvaluator,
    AlarmRules,
    Leg,
    Transition,
    load_alarm_rules,
)
from oracle.alarms.store import record_transitions
from oracle.storage.alarm_tables import AlarmCheckpoint, ShipmentLeg
from oracle.storage.db import transaction
from oracle.storage.tables import Shipment, TelemetryReading

log = logging.getLogger(__name__)

#: What the pipeline hands over per committed reading: (shipment id, ts in UNIX ms, °C).
CommittedReading = tuple[str, int, float]


@dataclass
class _Tracked:
    rules: AlarmRules | None
    evaluator: AlarmEvaluator | None
    since_checkpoint: int = 0
    loaded: float = 0.0


def shipment_profile(s: Session, shipment_id: str) -> str | None:
    """The profile name the shipment's escrow registered, or None (no escrow seen yet)."""
    from oracle.reports import subject_id

    raw = s.scalar(
        select(Shipment.profile).where(Shipment.subject == "0x" + subject_id("shipment", shipment_id).hex())
    )
    if not raw:
        return None
    name = bytes.fromhex(str(raw).removeprefix("0x")).rstrip(b"\x00").decode("ascii", errors="replace")
    return name if name.isidentifier() else None


class LiveAlarms:
    """Thread-safe. ``profile_of`` overrides the escrow look-up (tests, the bench); ``unknown_ttl_s``: how
    long a shipment without a profile is remembered as such before it is looked up again."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        checkpoint_every: int = 32,
        unknown_ttl_s: float = 10.0,
        rules_dir: Path = ALARM_DIR,
        profile_of: Callable[[Session, str], str | None] = shipment_profile,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.sessions = sessions
        self.checkpoint_every = checkpoint_every
        self.unknown_ttl_s = unknown_ttl_s
        self.rules_dir = rules_dir
        self.profile_of = profile_of
        self.clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._rules: dict[str, AlarmRules | None] = {}
        self._legs_seen = -1
        self._lock = threading.Lock()

    def __call__(self, readings: Sequence[CommittedReading]) -> None:
        self.on_committed(readings)

    def on_committed(self, readings: Sequence[CommittedReading]) -> int:
        """Evaluate committed readings; returns the number of alarm changes stored."""
        by_shipment: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for shipment, ts_ms, temp in readings:
            by_shipment[shipment].append((ts_ms, temp))
        with self._lock:
            try:
                return self._evaluate(by_shipment)
            except Exception:
                for shipment in by_shipment:  # restored from checkpoint + stored readings next time
                    self._tracked.pop(shipment, None)
                raise

    def _evaluate(self, by_shipment: dict[str, list[tuple[int, float]]]) -> int:
        now = self.clock()
        changed = 0
        with transaction(self.sessions) as s:
            self._pick_up_legs(s)
            missed = self._missed(s, by_shipment)
            checkpoints = []
            for shipment, items in by_shipment.items():
                tracked = self._tracked.get(shipment)
                if tracked is None or (
                    tracked.rules is None and time.monotonic() - tracked.loaded > self.unknown_ttl_s
                ):
                    tracked = self._restore(s, shipment)
                    missed.add(shipment)
                if shipment in missed and tracked.evaluator is not None and tracked.rules is not None:
                    replayed = self._replay(s, shipment, tracked.evaluator)
                    changed += record_transitions(s, shipment, tracked.rules, replayed, now)
                    tracked.since_checkpoint = self.checkpoint_every  # write one now
                ev, rules = tracked.evaluator, tracked.rules
                if ev is None or rules is None:
                    continue
                found: list[Transition] = []
                items.sort()
                for ts_ms, temp in items:
                    found += ev.reading(ts_ms // 1000, temp)
                tracked.since_checkpoint += len(items)
                if found:
                    changed += record_transitions(s, shipment, rules, found, now)
                if found or tracked.since_checkpoint >= self.checkpoint_every:
                    checkpoints.append((shipment, rules.profile, ev))
                    tracked.since_checkpoint = 0
            self._write_checkpoints(s, checkpoints, now)
        return changed

    def _missed(self, s: Session, by_shipment: dict[str, list[tuple[int, float]]]) -> set[str]:
        """Shipments in memory with stored readings between their evaluator's last reading and this batch
        (committed by another process): one query per batch, whatever the number of shipments."""
        gaps = []
        for shipment, items in by_shipment.items():
            tracked = self._tracked.get(shipment)
            ev = tracked.evaluator if tracked is not None else None
            if ev is not None and ev.last_ts is not None:
                gaps.append((shipment, (ev.last_ts + 1) * 1000, min(ts for ts, _ in items)))
        found: set[str] = set()
        if not gaps:
            return found
        # On the session's own DBAPI connection: building this statement through SQLAlchemy would cost
        # more than running it.
        conn = s.connection()
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cursor = conn.connection.cursor()
        try:
            for start in range(0, len(gaps), 300):
                chunk = gaps[start : start + 300]
                rows = ",".join([f"({mark},{mark},{mark})"] * len(chunk))
                sql = (
                    f"WITH k(s, lo, hi) AS (VALUES {rows}) "  # noqa: S608 - only placeholders are interpolated
                    "SELECT DISTINCT k.s FROM k JOIN telemetry_readings r "
                    "ON r.shipment_id = k.s AND r.ts_ms >= k.lo AND r.ts_ms < k.hi"
                )
                cursor.execute(sql, [v for gap in chunk for v in gap])
                found |= {str(x) for (x,) in cursor.fetchall()}
        finally:
            cursor.close()
        return found

    def _rules_for(self, profile: str | None) -> AlarmRules | None:
        if profile is None:
            return None
        if profile not in self._rules:
            self._rules[profile] = load_alarm_rules(profile, directory=self.rules_dir)
        return self._rules[profile]

    def _restore(self, s: Session, shipment: str) -> _Tracked:
        rules = self._rules_for(self.profile_of(s, shipment))
        tracked = _Tracked(rules=rules, evaluator=None, loaded=time.monotonic())
        if rules is not None:
            row = s.get(AlarmCheckpoint, shipment)
            ev = AlarmEvaluator.from_state(rules, row.state) if row is not None else AlarmEvaluator(rules)
            ev.pending_legs = []
            legs = s.execute(
                select(ShipmentLeg.at_s, ShipmentLeg.leg)
                .where(
                    ShipmentLeg.shipment_id == shipment,
                    ShipmentLeg.at_s > (ev.last_ts if ev.last_ts is not None else -(2**62)),
                )
                .order_by(ShipmentLeg.id)
            ).all()
            for at_s, leg in legs:
                ev.set_leg(int(at_s), cast(Leg, leg))
            tracked.evaluator = ev
        self._tracked[shipment] = tracked
        return tracked

    @staticmethod
    def _replay(s: Session, shipment: str, ev: AlarmEvaluator) -> list[Transition]:
        """Feed ``ev`` every stored reading of ``shipment`` after its last one (O(readings since then))."""
        after_ms = (ev.last_ts + 1) * 1000 if ev.last_ts is not None else -(2**62)
        rows = s.execute(
            select(TelemetryReading.ts_ms, TelemetryReading.temp_c)
            .where(TelemetryReading.shipment_id == shipment, TelemetryReading.ts_ms >= after_ms)
            .order_by(TelemetryReading.ts_ms, TelemetryReading.device_id, TelemetryReading.seq)
        ).all()
        out: list[Transition] = []
        for ts_ms, temp in rows:
            out += ev.reading(int(ts_ms) // 1000, float(temp))
        return out

    def _pick_up_legs(self, s: Session) -> None:
        """Leg events recorded since the last batch (by any process), routed to the evaluators in memory."""
        newest = s.scalar(select(func.max(ShipmentLeg.id))) or 0
        if newest == self._legs_seen:
            return
        if self._legs_seen >= 0:
            rows = s.execute(
                select(ShipmentLeg.shipment_id, ShipmentLeg.at_s, ShipmentLeg.leg)
                .where(ShipmentLeg.id > self._legs_seen)
                .order_by(ShipmentLeg.id)
            ).all()
            for shipment, at_s, leg in rows:
                tracked = self._tracked.get(shipment)
                if tracked is not None and tracked.evaluator is not None:
                    tracked.evaluator.set_leg(int(at_s), cast(Leg, leg))
        self._legs_seen = int(newest)

    @staticmethod
    def _write_checkpoints(
        s: Session, items: list[tuple[str, str, AlarmEvaluator]], now: dt.datetime
    ) -> None:
        if not items:
            return
        rows = [
            {
                "shipment_id": shipment,
                "profile": profile,
                "last_ts_ms": (ev.last_ts or 0) * 1000,
                "state": ev.to_state(),
                "updated_at": now,
            }
            for shipment, profile, ev in items
        ]
        table = cast(Table, AlarmCheckpoint.__table__)
        if s.get_bind().dialect.name == "postgresql":
            pg = postgresql.insert(table)
            stmt = pg.on_conflict_do_update(
                index_elements=["shipment_id"],
                set_={c: pg.excluded[c] for c in ("profile", "last_ts_ms", "state", "updated_at")},
                where=pg.excluded.last_ts_ms >= table.c.last_ts_ms,  # never back to an older state
            )
            s.execute(stmt, rows)
        else:
            lite = sqlite.insert(table)
            s.execute(
                lite.on_conflict_do_update(
                    index_elements=["shipment_id"],
                    set_={c: lite.excluded[c] for c in ("profile", "last_ts_ms", "state", "updated_at")},
                    where=lite.excluded.last_ts_ms >= table.c.last_ts_ms,
                ),
                rows,
            )

    def active_count(self) -> int:
        """Alarms whose condition holds now, over the shipments in memory."""
        with self._lock:
            return sum(len(t.evaluator.active()) for t in self._tracked.values() if t.evaluator is not None)

    def forget(self) -> None:
        """Drop every evaluator from memory (what a restart does); they are restored on their next reading."""
        with self._lock:
            self._tracked.clear()
            self._legs_seen = -1


def record_leg(
    sessions: sessionmaker[Session], *, shipment_id: str, leg: Leg, at_s: int, by: str
) -> ShipmentLeg:
    """Store a leg change; live evaluators pick it up with the next batch of readings."""
    from models.coldchain.excursions import LEGS
    from oracle.errors import ValidationError

    if leg not in LEGS:
        raise ValidationError(f"leg must be one of {LEGS}, got {leg!r}", reason="bad_leg")
    with transaction(sessions) as s:
        row = ShipmentLeg(shipment_id=shipment_id, leg=leg, at_s=at_s, recorded_by=by)
        s.add(row)
        s.flush()
        s.expunge(row)
    return row


_SHARED: weakref.WeakKeyDictionary[sessionmaker[Session], LiveAlarms] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def attach(ingest: object, sessions: sessionmaker[Session]) -> LiveAlarms:
    """Hook live alarms onto a :class:`~ingest.telemetry.pipeline.TelemetryIngest`. Pipelines over the same
    ``sessions`` in one process (the MQTT worker and the HTTP route) share one :class:`LiveAlarms`, so a
    shipment has one evaluator whichever way its readings arrive."""
    with _SHARED_LOCK:
        live = _SHARED.get(sessions)
        if live is None:
            live = _SHARED[sessions] = LiveAlarms(sessions)
    hooks = getattr(ingest, "after_commit", None)
    if isinstance(hooks, list) and live not in hooks:
        hooks.append(live)
    return live
