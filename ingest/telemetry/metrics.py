"""Prometheus counters of the telemetry ingest, registered once in the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

READINGS_ACCEPTED = Counter("oracle_telemetry_readings_accepted_total", "Readings newly stored", ["source"])
READINGS_DUPLICATE = Counter(
    "oracle_telemetry_readings_duplicate_total",
    "Readings already stored with identical content (redelivery; idempotent)",
    ["source"],
)
REJECTS = Counter(
    "oracle_telemetry_rejects_total",
    "Refused envelopes or readings, by reason code (see ingest.telemetry.envelope.RejectReason)",
    ["source", "reason"],
)
MESSAGES = Counter("oracle_telemetry_messages_total", "Envelopes processed (committed)", ["source"])
BATCH_SECONDS = Histogram(
    "oracle_telemetry_batch_commit_seconds",
    "Time to validate, store and commit one batch of messages",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
