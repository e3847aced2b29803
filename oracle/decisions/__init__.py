"""Decisions: evaluations that turn stored inputs into a report, recording every step for auditors."""
