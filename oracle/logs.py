"""Logging set-up for the entry points (CLI commands, workers, the service); library code only logs."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` with time, level and logger name; quiet the chattiest libraries."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # Per-request INFO lines from the HTTP client, and APScheduler's "running job" lines for the
    # sub-second outbox, listener and store-poll ticks, would drown the service's own log.
    for noisy in ("httpx", "apscheduler.executors", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
