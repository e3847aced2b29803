"""The durable MQTT ingest worker: nothing acknowledged is lost, nothing is stored twice.

- MQTT v5 with a persistent session: fixed client id, clean start off, ``SessionExpiryInterval`` > 0;
  while the worker is down the broker queues its readings. Falls back to MQTT 3.1.1 (clean session off)
  when the broker refuses v5.
- QoS 1 with ``manual_ack``: paho's network thread only hands each message to a queue (a slow database
  never blocks keep-alives); the writer (the thread that called :meth:`IngestWorker.run`) takes up to
  ``batch_size`` messages or ``batch_ms`` milliseconds' worth, commits them through
  :class:`~ingest.telemetry.pipeline.TelemetryIngest`, and only then sends the PUBACKs. A crash before the
  commit means the broker redelivers; a crash after it means a redelivery the unique (device, seq)
  constraint turns into a no-op. Rejected messages are acknowledged too, after their refusal is committed.
- Writer process (``WorkerConfig.writer_process``): validation and the commit run in a forked child process,
  so paho's network thread never waits for the GIL behind HMAC, JSON and SQL. The parent sends a batch,
  the child commits it and returns its outcome, and only then does the parent acknowledge the batch (and
  call ``on_commit``). A child that loses its parent (SIGKILL) finds the pipe closed and exits; whatever
  it committed was not acknowledged and comes back as idempotent redeliveries. Two batches are in
  flight at most: the next one is sent while the child commits the current one, so the child does not
  wait while the parent acknowledges and the parent does not wait while the child commits; the child
  commits them in order, and a batch is acknowledged only when its own outcome is back. A dead child is
  replaced and every batch still in flight is sent to the new one, in order. By default (``None``) the
  writer process is used for a plain :class:`TelemetryIngest` only: a subclass that overrides ``process``
  (say, to notify a scheduler living in this process) keeps committing in the caller's thread, where its
  side effects belong; pass ``on_commit`` instead to keep the writer process.
- Scale-out: every worker subscribes ``$share/<group>/oracle/v1/telemetry/+``; give each worker its own
  client id and the same group.
- End-to-end receipts (``WorkerConfig.receipts``, on by default): after a batch is committed and
  acknowledged, the worker publishes at QoS 1 to ``oracle/v1/receipts/{device_id}`` a JSON object
  ``{"receipts": [{"digest": <sha256 of the payload bytes, hex, 32 chars>, "status": "stored" | "refused",
  "reason": <reject reason, when refused>}]}``. A broker's PUBACK only says the broker has the message,
  and Mosquitto keeps its queues in memory between snapshots: a broker killed outright forgets what it
  acknowledged since the last one. A device that keeps each payload until its receipt arrives, and
  re-sends it otherwise, loses nothing even then (a re-sent payload is a duplicate, receipted as
  stored). See ``ingest/telemetry/README.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.telemetry.mqtt_poll import install as install_poll_loop
from ingest.telemetry.pipeline import BatchOutcome, IncomingMessage, TelemetryIngest

# paho's select() would never connect a socket numbered 1,024 or above (ingest/telemetry/mqtt_poll.py)
install_poll_loop()

logger = logging.getLogger(__name__)

TOPIC_PREFIX = "oracle/v1/telemetry/"
TOPIC_FILTER = TOPIC_PREFIX + "+"
_UNSUPPORTED_PROTOCOL = 132  # MQTT v5 CONNACK reason; paho maps a 3.1.1 broker's refusal onto it
_REFUSED_LOGIN = (134, 135)  # MQTT v5 CONNACK: bad user name or password / not authorised


def telemetry_topic(device_id: str) -> str:
    """The topic a device publishes on: ``oracle/v1/telemetry/{device_id}``."""
    return TOPIC_PREFIX + device_id


RECEIPT_PREFIX = "oracle/v1/receipts/"


def receipt_topic(device_id: str) -> str:
    """The topic a device reads its receipts on: ``oracle/v1/receipts/{device_id}``."""
    return RECEIPT_PREFIX + device_id


def payload_digest(payload: bytes) -> str:
    """How a receipt names a payload: SHA-256 of its exact bytes, hex, first 32 characters."""
    return hashlib.sha256(payload).hexdigest()[:32]


def receipts_by_device(
    messages: Sequence[IncomingMessage], outcome: BatchOutcome
) -> dict[str, list[dict[str, str]]]:
    """The receipts of a committed batch, grouped by device: a payload with any reading stored (now or
    before) is ``stored``; one refused whole is ``refused`` with the first reason."""
    out: dict[str, list[dict[str, str]]] = {}
    for message, result in zip(messages, outcome.messages, strict=True):
        receipt = {"digest": payload_digest(message.payload), "status": "stored"}
        if not (result.accepted or result.duplicates):
            receipt["status"] = "refused"
            receipt["reason"] = result.rejects[0].reason.value if result.rejects else "refused"
        out.setdefault(message.device_id, []).append(receipt)
    return out


@dataclass(frozen=True)
class WorkerConfig:
    host: str
    port: int
    client_id: str
    share_group: str = "oracle-ingest"
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 2000
    batch_size: int = 500
    batch_ms: int = 50
    keepalive_s: int = 30
    tls: bool = False
    username: str | None = None
    """Broker user (``ORACLE_MQTT_USERNAME``); the broker refuses anonymous clients."""
    password: str | None = field(default=None, repr=False)
    """Its password, read from ``ORACLE_MQTT_PASSWORD_FILE``; never logged, never in ``repr``."""
    ca_file: Path | None = None
    """CA certificate the broker's TLS certificate must chain to (``ORACLE_MQTT_CA_FILE``); None = the
    system's CAs."""
    writer_process: bool | None = None
    """Validate and commit in a forked child process (True), in the caller's thread (False), or decide by
    the ingest's type (None; see the module docstring)."""
    receipts: bool = True
    """Publish end-to-end receipts after each committed batch (see the module docstring)."""

    @property
    def subscription(self) -> str:
        """``$share/<group>/oracle/v1/telemetry/+``; the plain filter when ``share_group`` is empty."""
        return f"$share/{self.share_group}/{TOPIC_FILTER}" if self.share_group else TOPIC_FILTER


@dataclass(frozen=True)
class _Delivery:
    client: mqtt.Client
    mid: int
    qos: int
    message: IncomingMessage


@dataclass
class WorkerStats:
    messages: int = 0
    readings_accepted: int = 0
    duplicates: int = 0
    rejects: int = 0
    batches: int = 0
    retries: int = 0


class IngestWorker:
    """Runs until :meth:`stop` (or the ``stop`` event given to :meth:`run`) is set.

    Thread model: paho's loop thread → ``queue.SimpleQueue`` → the writer (caller of ``run``).
    """

    def __init__(
        self,
        ingest: TelemetryIngest,
        config: WorkerConfig,
        *,
        on_commit: Callable[[Sequence[IncomingMessage], BatchOutcome], None] | None = None,
    ) -> None:
        """``on_commit`` runs in this process after each committed batch, before its acknowledgements;
        an exception there is logged and does not hold the batch back (it is committed already)."""
        self.ingest = ingest
        self.config = config
        self.on_commit = on_commit
        self.stats = WorkerStats()
        self.protocol = mqtt.MQTTv5
        self.subscribed = threading.Event()
        self._queue: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._client: mqtt.Client | None = None
        self._fallback = threading.Event()
        self._writer: Any = None
        self._pipe: Connection | None = None
        self._in_flight: deque[tuple[list[_Delivery], float]] = deque()
        """Batches sent to the writer process and not yet answered, oldest first, with their send time."""

    # --- MQTT side (paho's thread) ---------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        c = self.config
        if self.protocol == mqtt.MQTTv5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=c.client_id, protocol=mqtt.MQTTv5, manual_ack=True
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=c.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        if c.username is not None:
            client.username_pw_set(c.username, c.password)
        if c.tls:
            client.tls_set(ca_certs=str(c.ca_file) if c.ca_file is not None else None)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        # The broker bounds what we hold unacknowledged by our Receive Maximum (v5); paho's own in-flight
        # cap is for our publishes only, so it stays at its default.
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect(self, client: mqtt.Client) -> None:
        c = self.config
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = c.session_expiry_s
            props.ReceiveMaximum = c.receive_maximum
            client.connect_async(c.host, c.port, keepalive=c.keepalive_s, clean_start=False, properties=props)
        else:
            client.connect_async(c.host, c.port, keepalive=c.keepalive_s)
        client.loop_start()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            if self.protocol == mqtt.MQTTv5 and reason.value == _UNSUPPORTED_PROTOCOL:
                logger.warning("broker refused MQTT v5; falling back to MQTT 3.1.1")
                self._fallback.set()
            elif reason.value in _REFUSED_LOGIN:
                logger.error(
                    "broker refused the connection: %s (as %s; set ORACLE_MQTT_USERNAME and "
                    "ORACLE_MQTT_PASSWORD_FILE to the ingest workers' broker login)",
                    reason,
                    self.config.username or "an anonymous client",
                )
            else:
                logger.error("broker refused the connection: %s", reason)
            return
        logger.info(
            "connected to %s:%s as %s (session present: %s)",
            self.config.host,
            self.config.port,
            self.config.client_id,
            getattr(flags, "session_present", None),
        )
        # Subscribing again on a resumed session is harmless and covers a broker that lost it.
        client.subscribe(self.config.subscription, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            logger.error("subscription to %s refused: %s", self.config.subscription, reasons)
            return
        logger.info("subscribed to %s", self.config.subscription)
        self.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.subscribed.clear()
        if not self._stop.is_set():
            logger.warning("disconnected from the broker (%s); paho reconnects", reason)

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Only hand over: anything slow here would stall keep-alives and every other delivery.
        topic = msg.topic
        device_id = topic[len(TOPIC_PREFIX) :] if topic.startswith(TOPIC_PREFIX) else topic
        self._queue.put(
            _Delivery(
                client,
                msg.mid,
                msg.qos,
                IncomingMessage(device_id, bytes(msg.payload), "mqtt", int(time.time() * 1000)),
            )
        )

    # --- writer side (the caller's thread) -------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self, stop: threading.Event | None = None) -> None:
        """Connect, ingest until stopped, then commit and acknowledge what was received, and disconnect."""
        if stop is not None:
            self._stop = stop
        if self.uses_writer_process:
            self._start_writer()  # forked before paho's thread exists
        client = self._make_client()
        self._client = client
        self._connect(client)
        try:
            while not self._stop.is_set():
                if self._fallback.is_set():
                    client = self._fall_back(client)
                self._write_batch(wait_s=0.2)
            # Drain what the broker already gave us so it is acknowledged now rather than redelivered.
            while not self._queue.empty():
                self._write_batch(wait_s=0.0)
            while self._in_flight:
                self._finish_oldest()
        finally:
            client.disconnect()
            client.loop_stop()
            self._stop_writer()

    def _fall_back(self, client: mqtt.Client) -> mqtt.Client:
        self._fallback.clear()
        client.loop_stop()
        client.disconnect()
        self.protocol = mqtt.MQTTv311
        new = self._make_client()
        self._client = new
        self._connect(new)
        return new

    def _next_batch(self, wait_s: float) -> list[_Delivery]:
        try:
            first = self._queue.get(timeout=wait_s) if wait_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.batch_ms / 1000
        while len(batch) < self.config.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _write_batch(self, *, wait_s: float) -> None:
        if self._pipe is not None:
            self._write_batch_pipelined(wait_s=wait_s)
            return
        batch = self._next_batch(wait_s)
        if not batch:
            return
        backoff = 0.05
        while True:
            try:
                outcome = self._commit([d.message for d in batch])
                if outcome is None:
                    return  # stopped while the writer process was still retrying: nothing is acknowledged
                break
            except Exception:
                # Nothing was committed, so nothing is acknowledged: the broker keeps the messages. Retry
                # the same batch (a database outage heals); a stop leaves them to be redelivered.
                self.stats.retries += 1
                logger.exception("committing %d telemetry messages failed; retrying", len(batch))
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 5.0)
        self._acknowledge(batch, outcome)

    def _write_batch_pipelined(self, *, wait_s: float) -> None:
        """Writer process: send the next batch, then take the oldest answer once two are in flight (or
        when no new batch came), so the child always has the next batch while it commits one."""
        batch = self._next_batch(0.0 if self._in_flight else wait_s)
        if batch:
            self._in_flight.append((batch, time.perf_counter()))
            self._send_to_writer(batch)
        if self._in_flight and (len(self._in_flight) > 1 or not batch):
            self._finish_oldest()

    @staticmethod
    def _wire(batch: list[_Delivery]) -> list[tuple[str, bytes, str, int]]:
        """What the writer process gets of a batch (it rebuilds the messages)."""
        return [
            (d.message.device_id, d.message.payload, d.message.source, d.message.received_ms) for d in batch
        ]

    def _send_to_writer(self, batch: list[_Delivery]) -> None:
        try:
            assert self._pipe is not None
            self._pipe.send(self._wire(batch))
        except OSError:
            self._replace_writer()

    def _finish_oldest(self) -> None:
        """Wait for the oldest batch's outcome, then acknowledge it; a stop that outlasts a writer still
        retrying after 30 s gives up on every batch in flight (unacknowledged: the broker redelivers)."""
        batch, sent = self._in_flight[0]
        outcome = self._receive_outcome()
        if outcome is None:
            self._in_flight.clear()
            return
        self._in_flight.popleft()
        TelemetryIngest.record_metrics([d.message for d in batch], outcome, time.perf_counter() - sent)
        self._acknowledge(batch, outcome)

    def _receive_outcome(self) -> BatchOutcome | None:
        stopped_at: float | None = None
        while True:
            assert self._pipe is not None
            try:
                if self._pipe.poll(0.2):
                    outcome: BatchOutcome = self._pipe.recv()
                    return outcome
            except (EOFError, OSError):  # it died with batches in flight: none of them was acknowledged
                self._replace_writer()
                continue
            if self._writer is not None and not self._writer.is_alive():
                self._replace_writer()
            if self._stop.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > 30:
                    return None

    def _replace_writer(self) -> None:
        """Start a new writer process and send it every batch in flight, oldest first (committed by the
        dead one or not, they were not acknowledged; a second commit of one is an idempotent no-op)."""
        backoff = 0.05
        while True:
            code = self._writer.exitcode if self._writer is not None else None
            self.stats.retries += 1
            logger.error(
                "the telemetry writer process died (exit code %s); starting a new one for %d batch(es) "
                "in flight",
                code,
                len(self._in_flight),
            )
            self._stop_writer()
            self._start_writer()
            try:
                assert self._pipe is not None
                for batch, _sent in self._in_flight:
                    self._pipe.send(self._wire(batch))
                return
            except OSError:
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 5.0)

    def _acknowledge(self, batch: list[_Delivery], outcome: BatchOutcome) -> None:
        """After the commit: ``on_commit``, the PUBACKs, the receipts, the counters."""
        if self.on_commit is not None:
            try:
                self.on_commit([d.message for d in batch], outcome)
            except Exception:
                logger.exception("on_commit failed for a committed batch of %d messages", len(batch))
        for d in batch:
            if d.qos > 0:
                d.client.ack(d.mid, d.qos)
        if self.config.receipts:
            client = batch[0].client
            for device, receipts in receipts_by_device([d.message for d in batch], outcome).items():
                # A receipt lost to a broker crash costs a re-send and a duplicate, never a reading.
                client.publish(receipt_topic(device), json.dumps({"receipts": receipts}), qos=1)
        self.stats.batches += 1
        self.stats.messages += len(batch)
        self.stats.readings_accepted += outcome.accepted
        self.stats.duplicates += outcome.duplicates
        self.stats.rejects += outcome.rejected

    # --- writer process ------------------------------------------------------------------------------------

    @property
    def uses_writer_process(self) -> bool:
        """Whether batches are committed in a forked writer process (see ``WorkerConfig.writer_process``)."""
        if self.config.writer_process is not None:
            return self.config.writer_process
        return type(self.ingest).process is TelemetryIngest.process

    def _start_writer(self) -> None:
        ctx = mp.get_context("fork")  # the child inherits the configured ingest (sessions, blobs, KEK)
        parent, child = ctx.Pipe()
        self._writer = ctx.Process(
            target=_writer_main,
            args=(self.ingest, child, parent, os.getpid()),
            name="telemetry-writer",
            daemon=True,
        )
        self._writer.start()
        child.close()
        self._pipe = parent

    def _stop_writer(self) -> None:
        if self._pipe is not None:
            self._pipe.close()  # the child sees EOF and exits
            self._pipe = None
        if self._writer is not None:
            self._writer.join(10)
            if self._writer.is_alive():
                self._writer.kill()
            self._writer = None

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid (None when committing in the caller's thread or not running)."""
        return self._writer.pid if self._writer is not None else None

    def _commit(self, messages: list[IncomingMessage]) -> BatchOutcome | None:
        """Commit in this thread (the writer process path is :meth:`_write_batch_pipelined`)."""
        return self.ingest.process(messages)


def _writer_main(ingest: TelemetryIngest, pipe: Connection, parent_end: Connection, parent_pid: int) -> None:
    """The writer process: batches in, committed outcomes out, until the pipe closes or the parent dies."""
    parent_end.close()  # our inherited copy of the parent's end would keep the pipe open after it dies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's graceful-stop handler: nothing to drain
    bind = ingest.sessions.kw.get("bind")
    if bind is not None:
        bind.dispose(close=False)  # never share the parent's pooled connections across the fork
    ingest.count_metrics = False  # the parent counts the outcomes it serves on /metrics
    # A thread takes the batches off the pipe as they come: the parent sends the next batch while it
    # waits for this one's outcome, and a large batch one way and a large outcome the other must never
    # both wait for the other side to read (each direction of the pipe buffers only so much).
    batches: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def take_batches() -> None:
        while True:
            try:
                batches.put(pipe.recv())
            except (EOFError, OSError):
                batches.put(None)
                return

    threading.Thread(target=take_batches, name="telemetry-writer-pipe", daemon=True).start()
    backoff = 0.05
    while True:
        batch = batches.get()
        if batch is None:
            return
        messages = [IncomingMessage(d, p, src, ms) for d, p, src, ms in batch]
        while True:
            try:
                outcome = ingest.process(messages)
                break
            except Exception:
                # Nothing was committed; retry the same batch (a database outage heals) unless orphaned.
                logger.exception("writer: committing %d telemetry messages failed; retrying", len(messages))
                if os.getppid() != parent_pid:
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        backoff = 0.05
        try:
            pipe.send(outcome)
        except (BrokenPipeError, OSError):
            return


def worker_config(
    settings: Any,
    *,
    host: str | None,
    port: int | None,
    client_id: str | None = None,
    group: str | None = None,
    tls: bool = False,
) -> Any:
    """A :class:`~ingest.telemetry.worker.WorkerConfig` from settings, with CLI overrides.

    The broker login comes from ``ORACLE_MQTT_USERNAME`` and the file ``ORACLE_MQTT_PASSWORD_FILE``.
    """
    from oracle.broker_auth import worker_login

    login = worker_login(settings)
    return WorkerConfig(
        host=host or "127.0.0.1",
        port=port or (8883 if tls else 1883),
        client_id=client_id or settings.mqtt_client_id,
        share_group=settings.mqtt_share_group if group is None else group,
        session_expiry_s=settings.mqtt_session_expiry_s,
        receive_maximum=settings.mqtt_receive_maximum,
        batch_size=settings.telemetry_batch_size,
        batch_ms=settings.telemetry_batch_ms,
        tls=tls,
        username=login.username if login is not None else None,
        password=login.password if login is not None else None,
        ca_file=settings.mqtt_ca_file,
    )
