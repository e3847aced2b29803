"""The MQTT ingest worker exactly as ``oracle run`` starts it (in a thread, committing in that thread,
notifying the scheduler), in a process of its own so a test can SIGKILL it.

``python -m tests.telemetry.service_worker`` with the usual ``ORACLE_*`` environment; SIGTERM stops it.
"""

from __future__ import annotations

import signal
import threading

from oracle.config import load_settings
from oracle.context import open_context
from oracle.logs import configure_logging
from oracle.service import start_ingest_worker


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    ctx = open_context(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    halt = start_ingest_worker(ctx)
    stop.wait()
    halt()
    ctx.close()


if __name__ == "__main__":
    main()
