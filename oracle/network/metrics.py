"""``/metrics`` figures of a network node: rounds by state, disagreements, peer traffic, takeovers."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from oracle.context import Context
from oracle.network.rounds import NodeRuntime, disagreement_count
from oracle.storage.network_tables import NetworkRound

log = logging.getLogger(__name__)


class NetworkCollector(Collector):
    def __init__(self, ctx: Context, runtime: NodeRuntime) -> None:
        self.ctx = ctx
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        members = GaugeMetricFamily(
            "oracle_network_members", "members of the network and its threshold", labels=["what"]
        )
        members.add_metric(["members"], float(len(self.runtime.network.members)))
        members.add_metric(["threshold"], float(self.runtime.network.threshold))
        yield members
        try:
            with self.ctx.sessions() as s:
                states = list(
                    s.execute(select(NetworkRound.status, func.count()).group_by(NetworkRound.status))
                )
            disagreements = disagreement_count(self.ctx)
        except SQLAlchemyError as e:
            log.warning("metrics: network figures unavailable: %s", e.__class__.__name__)
            return
        rounds = GaugeMetricFamily("oracle_network_rounds", "this node's rounds by state", labels=["state"])
        for state, n in states:
            rounds.add_metric([str(state)], float(n))
        yield rounds
        dis = GaugeMetricFamily(
            "oracle_network_disagreements", "peer signatures over a different digest than this node's"
        )
        dis.add_metric([], float(disagreements))
        yield dis
        yield self._heartbeats()
        counters = CounterMetricFamily(
            "oracle_network_events", "network events since this node started", labels=["event"]
        )
        for name, n in sorted(self.runtime.counters.items()):
            counters.add_metric([name], float(n))
        yield counters

    def _heartbeats(self) -> GaugeMetricFamily:
        """1 for a subscribed subject whose newest accepted report is older than the heartbeat."""
        import time

        missed = GaugeMetricFamily(
            "oracle_heartbeat_missed",
            "1 when a subscribed subject's newest accepted report is older than the network's heartbeat",
            labels=["subject"],
        )
        now = time.time()
        try:
            self._fill(missed, now)
        except SQLAlchemyError as e:
            log.warning("metrics: heartbeats unavailable: %s", e.__class__.__name__)
        return missed

    def _fill(self, missed: GaugeMetricFamily, now: float) -> None:
        from oracle.network.heartbeat import heartbeats

        with self.ctx.sessions() as s:
            for beat in heartbeats(s, self.runtime.network.heartbeat_s, now):
                missed.add_metric([beat["name"]], 1.0 if beat["missed"] else 0.0)
