"""Logging set-up for the entry points (CLI commands, workers, the service); library code only logs.

Two formats, one line per record (``ORACLE_LOG_FORMAT``, default ``text``):

* ``text``: ``2026-11-30 16:59:57,930 INFO oracle.chain.outbox outbox confirmed key=... tx_hash=...``, with
  any ``extra={...}`` fields the message does not already show appended as ``name=value``;
* ``json``: ``{"time", "level", "logger", "message", ...fields}``, where the fields are the record's
  ``extra={...}`` and every ``name=value`` word of the message (the house style names ids that way:
  ``subject=``, ``epoch=``, ``tx_hash=``, ``device_id=``), and ``exc`` holds a traceback if there is one.

Secrets never reach a line: a field or ``name=value`` word whose name says secret (token, secret,
password, passphrase, private key, API key, authorization, cookie, KEK, mnemonic) is replaced by
``[redacted]`` at any depth, and so are bearer credentials, credentials in URLs (``user:pass@``,
``?apikey=``) and PEM private-key blocks anywhere in a message, field or traceback. A secret under an
innocent name (a raw 32-byte key as ``detail=0x...``) cannot be told from a transaction hash and is not
caught: pass secrets as ``SecretStr``, whose text is ``**********``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

from oracle.errors import ConfigError

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
REDACTED = "[redacted]"

#: Libraries whose INFO lines are per request or per tick, not per event: the HTTP client's request
#: lines and APScheduler's "running job" lines for the sub-second outbox, listener and store-poll ticks.
NOISY_LOGGERS = ("httpx", "apscheduler.executors", "apscheduler.scheduler")

_SECRET_NAME = re.compile(
    r"(token|secret|passw(or)?d|passphrase|priv(ate)?_?key|api_?key|authorization|auth_header|cookie|"
    r"credential|mnemonic|seed_phrase|kek)",
    re.IGNORECASE,
)
_FIELD_WORD = re.compile(r"(?<![\w.:/-])([A-Za-z_][A-Za-z0-9_]*)=([^\s;]+)")
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@"), rf"\1{REDACTED}@"),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL),
        REDACTED,
    ),
    (
        re.compile(
            r"(?i)([?&;]|\b)([a-z0-9_]*(token|secret|passw(or)?d|passphrase|priv(ate)?_?key|api_?key|"
            r"authorization|cookie|kek)[a-z0-9_]*)\s*[=:]\s*(\"[^\"]*\"|'[^']*'|[^\s&,;\"')]+)"
        ),
        rf"\1\2={REDACTED}",
    ),
)
#: Attributes every LogRecord has; anything else on a record came from ``extra={...}``.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact_text(text: str) -> str:
    """``text`` with bearer/basic credentials, URL credentials, PEM private keys and ``secret-name=value``
    pairs replaced by ``[redacted]``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, *, name: str = "") -> Any:
    """``value`` made safe to log: everything under a secret-sounding ``name`` (or key, at any depth)
    becomes ``[redacted]``; strings are passed through :func:`redact_text`."""
    if name and _SECRET_NAME.search(name):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact(v, name=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))


def record_fields(record: logging.LogRecord, message: str) -> dict[str, Any]:
    """The record's ``extra={...}`` fields and the message's ``name=value`` words, redacted; an extra
    field wins over a word of the same name. Word values that are plain integers become numbers."""
    fields: dict[str, Any] = {}
    for name, raw in _FIELD_WORD.findall(message):
        value = raw.rstrip(").:,")
        fields[name] = int(value) if re.fullmatch(r"-?\d{1,15}", value) else value
    for name, value in record.__dict__.items():
        if name not in _RECORD_ATTRS and not name.startswith("_"):
            fields[name] = value
    return {name: redact(value, name=name) for name, value in fields.items()}


class TextFormatter(logging.Formatter):
    """``time level logger message`` plus the extra fields the message does not show, on one line
    (a traceback, if any, follows on its own lines)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = redact_text(record.getMessage()).replace("\r", "\\r").replace("\n", "\\n")
        extras = {
            name: redact(value, name=name)
            for name, value in record.__dict__.items()
            if name not in _RECORD_ATTRS and not name.startswith("_") and f"{name}=" not in message
        }
        tail = "".join(f" {name}={_text_value(value)}" for name, value in extras.items())
        return f"{record.asctime} {record.levelname} {record.name} {message}{tail}"

    def formatException(self, ei: Any) -> str:
        return redact_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact_text(super().formatStack(stack_info))


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False) if (not text or re.search(r"\s", text)) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601, ms), ``level``, ``logger``, ``message``, the
    fields of :func:`record_fields`, and ``exc`` with the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact_text(record.getMessage())
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for name, value in record_fields(record, record.getMessage()).items():
            out[name if name not in out else f"field_{name}"] = value
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(out, default=str, ensure_ascii=False)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``text`` or ``json``; raises ConfigError for anything else."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ConfigError(f"ORACLE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")


def configure_logging(level: str, *, log_format: str | None = None, stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) at ``level`` in ``log_format`` and quiet the chattiest libraries.

    Without ``log_format`` the ``ORACLE_LOG_FORMAT`` environment variable decides (``text`` if unset), so
    an entry point that passes only the level, and the node processes it starts, follow the setting.
    Calling again replaces the handler this function installed, not others (a test's capture)."""
    chosen = log_format or os.environ.get("ORACLE_LOG_FORMAT", "").strip().lower() or "text"
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(chosen))
    handler.set_name("oracle")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "oracle"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
