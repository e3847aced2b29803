"""Operational excursion alarms: live evaluation of committed readings, the alarm lifecycle, webhooks.

The rules and the evaluator are pure (:mod:`models.coldchain.excursions`); this package is their I/O:
:mod:`~oracle.alarms.live` (the hook the telemetry pipeline calls after each commit),
:mod:`~oracle.alarms.store` (alarm rows, raised → acknowledged → cleared) and
:mod:`~oracle.alarms.webhooks` (signed POSTs from a durable queue). Alarms never change a signed verdict.
"""
