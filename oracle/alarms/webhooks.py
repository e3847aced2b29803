"""Alarm webhooks: every alarm transition is POSTed to every enabled webhook, at least once.

- **Durable queue**: a transition enqueues one ``webhook_deliveries`` row per webhook in the same
  transaction that records it, so a transition is never recorded without its deliveries (nor the reverse).
  :class:`WebhookDispatcher` sends the due rows; a 2xx answer marks a row ``delivered``, anything else (an
  error status, a refused connection, a timeout) schedules a retry after 1, 2, 4 … s, at most
  ``max_backoff_s`` apart, for as long as it takes: a webhook that is down gets everything later.
- **The request**: ``POST`` of the stored JSON body (the same bytes on every retry) with
  ``Content-Type: application/json``, ``Idempotency-Key: <event key>`` (``<shipment>/<rule>/<raised_at_s>/
  <action>``, also in the body as ``event_id``; a receiver dedupes on it) and
  ``X-Oracle-Signature: sha256=<hex HMAC-SHA256 of the body under the webhook's secret>``.
- **Secrets**: 32 random bytes per webhook, hex, generated into ``<data dir>/alarm-webhooks/<name>.secret``
  (mode 0600) when the webhook is added. Never in the database, a response or a log line; the receiver's
  operator copies the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from oracle.errors import ValidationError
from oracle.storage.alarm_tables import AlarmWebhook, WebhookDelivery
from oracle.storage.db import transaction

log = logging.getLogger(__name__)

WEBHOOK_DIR_NAME = "alarm-webhooks"
SIGNATURE_HEADER = "X-Oracle-Signature"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def secret_path(data_dir: Path, name: str) -> Path:
    return data_dir / WEBHOOK_DIR_NAME / f"{name}.secret"


def sign_body(secret: bytes, body: bytes) -> str:
    """The ``X-Oracle-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign_body(secret, body), header)


def add_webhook(sessions: sessionmaker[Session], data_dir: Path, *, name: str, url: str) -> AlarmWebhook:
    """Register a webhook and write its secret file (an existing file is kept, so re-adding a webhook
    does not break its receiver). Raises ValidationError for a bad name or URL, or a taken name."""
    if not _NAME.fullmatch(name):
        raise ValidationError(
            f"webhook name {name!r}: letters, digits, _ and -, at most 64", reason="bad_webhook"
        )
    if not re.fullmatch(r"https?://[^\s]+", url) or len(url) > 500:
        raise ValidationError(
            "webhook url must be an http(s) URL of at most 500 characters", reason="bad_webhook"
        )
    path = secret_path(data_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with transaction(sessions) as s:
        if s.scalar(select(AlarmWebhook.id).where(AlarmWebhook.name == name)) is not None:
            raise ValidationError(f"a webhook named {name!r} exists", reason="webhook_exists")
        row = AlarmWebhook(name=name, url=url, enabled=True)
        s.add(row)
        s.flush()
        s.expunge(row)
    return row


def load_secret(data_dir: Path, name: str) -> bytes:
    return secret_path(data_dir, name).read_text(encoding="ascii").strip().encode()


def enqueue(s: Session, event_key: str, payload: dict[str, Any], now: dt.datetime) -> int:
    """Queue ``payload`` for every enabled webhook inside the caller's transaction; returns the count.
    The webhook list is read once per transaction."""
    hooks = s.info.get("alarm_webhooks")
    if hooks is None:
        hooks = s.info["alarm_webhooks"] = list(
            s.scalars(select(AlarmWebhook.id).where(AlarmWebhook.enabled.is_(True))).all()
        )
    body = json.dumps({"event_id": event_key, **payload}, sort_keys=True, separators=(",", ":"))
    for hook_id in hooks:
        s.add(WebhookDelivery(webhook_id=hook_id, event_key=event_key, body=body, next_attempt_at=now))
    return len(hooks)


class WebhookDispatcher:
    """Sends due deliveries. :meth:`pump` does one pass (for tests and the bench); :meth:`start` runs
    passes in a daemon thread every ``interval_s`` until :meth:`stop`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        data_dir: Path,
        *,
        timeout_s: float = 5.0,
        max_backoff_s: float = 300.0,
        batch: int = 20,
        interval_s: float = 0.5,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.sessions, self.data_dir = sessions, data_dir
        self.max_backoff_s, self.batch, self.interval_s, self.clock = max_backoff_s, batch, interval_s, clock
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.lease_s = timeout_s * batch + 30.0  # longer than one pass's sends can take
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _claim(self) -> list[tuple[int, str, str, int]]:
        """Lease up to ``batch`` due rows to this dispatcher: pushing ``next_attempt_at`` past the time the
        sends can take in one UPDATE (re-checked under the row lock), so dispatchers of several processes
        do not send the same row at once."""
        now = self.clock()
        due = (
            select(WebhookDelivery.id)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.id)
            .limit(self.batch)
        )
        with transaction(self.sessions) as s:
            rows = s.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id.in_(due),
                    WebhookDelivery.state == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + dt.timedelta(seconds=self.lease_s))
                .returning(
                    WebhookDelivery.id,
                    WebhookDelivery.event_key,
                    WebhookDelivery.body,
                    WebhookDelivery.webhook_id,
                )
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((int(i), str(k), str(b), int(w)) for i, k, b, w in rows)

    def pump(self) -> int:
        """Send every due delivery once; returns how many were delivered."""
        claimed = self._claim()
        if not claimed:
            return 0
        with self.sessions() as s:
            hooks = {
                int(i): (str(n), str(u))
                for i, n, u in s.execute(select(AlarmWebhook.id, AlarmWebhook.name, AlarmWebhook.url))
            }
        delivered = 0
        for row_id, key, body, hook_id in claimed:
            name, url = hooks[hook_id]
            error = self._send(url, name, key, body.encode())
            with transaction(self.sessions) as s:
                row = s.get(WebhookDelivery, row_id)
                if row is None or row.state != "pending":
                    continue
                row.attempts += 1
                if error is None:
                    row.state, row.delivered_at, row.last_error = "delivered", self.clock(), None
                    delivered += 1
                else:
                    delay = min(2.0 ** (row.attempts - 1), self.max_backoff_s)
                    row.next_attempt_at = self.clock() + dt.timedelta(seconds=delay)
                    row.last_error = error[:300]
        return delivered

    def _send(self, url: str, name: str, key: str, body: bytes) -> str | None:
        try:
            secret = load_secret(self.data_dir, name)
        except OSError:
            log.error("webhook %s: its secret file is missing; delivery %s waits", name, key)
            return "secret file missing"
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            SIGNATURE_HEADER: sign_body(secret, body),
        }
        try:
            answer = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            log.info("webhook %s: delivery %s failed (%s); will retry", name, key, type(e).__name__)
            return f"{type(e).__name__}"
        if 200 <= answer.status_code < 300:
            return None
        log.info("webhook %s: delivery %s answered %d; will retry", name, key, answer.status_code)
        return f"HTTP {answer.status_code}"

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.pump()
                except Exception:
                    log.exception("webhook dispatcher pass failed; retrying")
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=loop, name="alarm-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.client.close()
