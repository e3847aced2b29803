"""Prometheus metrics of the API process, on a registry per app (so two apps in one process, as in the
tests, never collide); ``/metrics`` serves it after the process-wide default registry.

- ``oracle_http_requests_total{method,route,status}`` and ``oracle_http_request_duration_seconds{method,
  route}``: ``route`` is the route template (``/v1/attestations/{attestation_id}``), or ``unmatched``, so
  made-up paths cannot blow up the label set.
- From the database at scrape time (a few indexed aggregate queries): ``oracle_outbox_rows{state}``,
  ``oracle_gas_used_total`` (sum of ``gas_used`` over confirmed transactions, gas units),
  ``oracle_last_report_age_seconds{subject}`` (seconds since the newest report per subject was recorded)
  and ``oracle_metrics_db_up`` (0 when the queries failed; the other database figures are then absent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oracle.storage.tables import OutboxRow, ReportRow, utcnow

log = logging.getLogger(__name__)

MAX_SUBJECT_SERIES = 1000


class DatabaseCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("oracle_metrics_db_up", "1 when the database figures below could be read")
        try:
            with self.sessions() as s:
                depth = list(s.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status)))
                gas = s.scalar(
                    select(func.coalesce(func.sum(OutboxRow.gas_used), 0)).where(
                        OutboxRow.status == "confirmed"
                    )
                )
                latest = list(
                    s.execute(
                        select(
                            ReportRow.subject,
                            func.max(ReportRow.subject_name),
                            func.max(ReportRow.created_at),
                        )
                        .group_by(ReportRow.subject)
                        .limit(MAX_SUBJECT_SERIES)
                    )
                )
        except SQLAlchemyError as e:
            log.warning("metrics: database figures unavailable: %s", e.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        outbox = GaugeMetricFamily("oracle_outbox_rows", "outbox rows by state", labels=["state"])
        for state, n in depth:
            outbox.add_metric([str(state)], float(n))
        yield outbox
        total = GaugeMetricFamily(
            "oracle_gas_used_total", "gas used by confirmed oracle transactions (gas units)"
        )
        total.add_metric([], float(gas or 0))
        yield total
        age = GaugeMetricFamily(
            "oracle_last_report_age_seconds",
            "seconds since the newest report per subject",
            labels=["subject"],
        )
        now = utcnow()
        for subject, name, at in latest:
            if at is None:
                continue
            at_utc = at if at.tzinfo is not None else at.replace(tzinfo=now.tzinfo)
            age.add_metric([str(name or subject)], max(0.0, (now - at_utc).total_seconds()))
        yield age


class HttpMetrics:
    """ASGI middleware counting requests and timing them by route template and status."""

    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "oracle_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "oracle_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.requests.labels(method, route, str(status)).inc()
            self.latency.labels(method, route).observe(time.perf_counter() - started)
