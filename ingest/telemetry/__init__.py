"""MQTT/HTTP telemetry ingest for cold-chain shipments: signed envelopes in, committed readings out.

- :mod:`.envelope`: canonical JSON, HMAC signing/verification, reading schema, reject reasons.
- :mod:`.pipeline`: :class:`TelemetryIngest`, the one validate-and-store path MQTT and HTTP share.
- :mod:`.worker`: :class:`IngestWorker`, the durable paho-mqtt consumer (ack only after commit).
"""

from ingest.telemetry.envelope import (
    Reading,
    RejectReason,
    canonical_json,
    parse_envelope,
    sign_envelope,
    validate_reading,
)
from ingest.telemetry.pipeline import BatchOutcome, IncomingMessage, MessageOutcome, TelemetryIngest

__all__ = [
    "BatchOutcome",
    "IncomingMessage",
    "MessageOutcome",
    "Reading",
    "RejectReason",
    "TelemetryIngest",
    "canonical_json",
    "parse_envelope",
    "sign_envelope",
    "validate_reading",
]
