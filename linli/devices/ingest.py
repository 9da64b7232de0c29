"""The ingest service (`linli ingest`): a long-running MQTT subscriber, not a flow.

    broker ──QoS 1──▶ on_message (paho network thread) ──queue──▶ writer thread
                                                                   │ BatchWriter.write (one transaction)
                                                                   │ commit
                                                                   ├─▶ client.ack(mid) for each message
                                                                   └─▶ new alarms → fast path (its own threads)
              └─ life-safety topics ──lane──▶ urgent writer thread (the same steps, its own small transactions)

A message is acknowledged only after its batch is committed (paho ``manual_ack``), the session is
persistent (MQTT 5 clean start off, a session expiry), so a crash loses nothing: the broker sends
the unacknowledged messages again and the writer's insert-or-ignore writes nothing twice. Replicas
share the load through ``$share/<group>/linli/+/+/+/+``. A database failure is retried (the batch is
neither written nor acknowledged); a batch that keeps failing is split so one bad message cannot
stop the rest — it ends in the dead-letter table. Ingest never stops on a message.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import DBAPIError, OperationalError

from linli.devices import protocol
from linli.devices.alarms import NewAlarm
from linli.devices.mqttclient import FastClient
from linli.devices.writer import BatchResult, BatchWriter, Incoming
from linli.models import DeadLetter, utcnow

log = logging.getLogger(__name__)


@dataclass
class Counters:
    """What ingest has done since it started; `lag_seconds` is receipt → commit of the last batch."""

    received: int = 0
    written: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    alarms: int = 0
    records: int = 0
    batches: int = 0
    db_retries: int = 0
    queued: int = 0
    lag_seconds: float = 0.0
    connected: bool = False


@dataclass(frozen=True)
class IngestOptions:
    """How one ingest replica connects and batches."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    client_id: str = ""
    shared_group: str = "linli-ingest"
    batch_size: int = 2000
    batch_wait: float = 0.05
    session_expiry: int = 7 * 24 * 3600
    retry_seconds: float = 1.0


class _Abandon(Exception):
    """Stopping while the database is away: leave the batch unacknowledged."""


class IngestService:
    """One ingest replica: paho client, a queue, and a writer thread."""

    def __init__(self, writer: BatchWriter, options: IngestOptions, *,
                 on_alarms: Callable[[list[NewAlarm]], None] | None = None) -> None:
        self.writer = writer
        self.options = options
        self.on_alarms = on_alarms
        self.counters = Counters()
        # Called once per committed batch with (messages, seconds to write it): metrics, never per message.
        self.on_batch: Callable[[int, float], None] | None = None
        self.client_id = options.client_id or f"linli-ingest-{uuid.uuid4().hex[:8]}"
        # A deque, not queue.Queue: append and popleft are atomic and far cheaper at 10,000s a second.
        self._queue: deque[Incoming] = deque()
        # Messages that may raise a life-safety alarm skip the bulk queue: the writer takes them first.
        self._urgent: deque[Incoming] = deque()
        self._urgent_ready = threading.Event()
        self._count_lock = threading.Lock()  # two writer threads add to the counters
        self._urgent_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()
        self.client = FastClient(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=mqtt.MQTTv5, manual_ack=True)
        if options.username:
            self.client.username_pw_set(options.username, options.password or None)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.reconnect_delay_set(1, 10)

    # --- MQTT side (paho's network thread) --------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self._generation += 1
        self.counters.connected = True
        client.subscribe(protocol.subscription(self.options.shared_group), qos=1)
        if getattr(_flags, "session_present", False):
            # The broker kept the session and its subscription: a backlog of queued messages arrives
            # before the new SUBACK, which can take longer than start() waits after a long outage.
            self._subscribed.set()
        log.info("connected to %s:%s as %s", self.options.host, self.options.port, self.client_id)

    def _on_disconnect(self, *_args: Any) -> None:
        self.counters.connected = False
        log.warning("disconnected from the broker; paho reconnects")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.counters.received += 1
        name = message.topic
        incoming = Incoming(name, message.payload, message.mid, message.qos, time.time(), self._generation)
        if self.writer.urgent(name):
            self._urgent.append(incoming)
            self._urgent_ready.set()
        else:
            self._queue.append(incoming)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, *, wait: float = 10.0) -> None:
        """Connect, subscribe and start writing; returns once subscribed (or raises after `wait` s)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.options.session_expiry
        props.ReceiveMaximum = 65535  # many messages in flight: they are acked a batch at a time
        self.client.connect(self.options.host, self.options.port, keepalive=30, clean_start=False,
                            properties=props)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._write_loop, name=f"{self.client_id}-writer", daemon=True)
        self._thread.start()
        self._urgent_thread = threading.Thread(target=self._urgent_loop, name=f"{self.client_id}-urgent",
                                               daemon=True)
        self._urgent_thread.start()
        if not self._subscribed.wait(wait):
            raise TimeoutError(f"no subscription at {self.options.host}:{self.options.port} within {wait} s")

    def retire(self, *, quiet_seconds: float = 2.0, timeout: float = 600.0) -> None:
        """Take what the broker kept for this client id, then leave the shared group for good.

        A replica's persistent session stays a member of the shared subscription after the replica has
        gone (Mosquitto keeps queueing a share of the messages for it until the session expires), so a
        replica that is retired — scaled down, renamed, or a demo's on a broker production now uses —
        must end its session: unsubscribe, write and acknowledge everything that arrived, then
        disconnect with a session expiry of 0. `stop()` keeps the session, so nothing published while
        ingest is down (an upgrade, a restart) is lost.
        """
        deadline = time.monotonic() + timeout
        last = (-1, time.monotonic())
        while time.monotonic() < deadline:  # the backlog comes first; wait until nothing more arrives
            received = self.counters.received
            if received != last[0]:
                last = (received, time.monotonic())
            elif time.monotonic() - last[1] >= quiet_seconds and not self._queue and not self._urgent:
                break
            time.sleep(0.1)
        unsubscribed = threading.Event()
        self.client.on_unsubscribe = lambda *_args: unsubscribed.set()
        self.client.unsubscribe(protocol.subscription(self.options.shared_group))
        if not unsubscribed.wait(10):
            log.warning("no UNSUBACK within 10 s; leaving anyway")
        # What was on its way before the UNSUBACK is in the queue now: stop() writes and acknowledges it.
        self.stop(end_session=True)

    def stop(self, *, end_session: bool = False) -> None:
        """Write what is queued, acknowledge it, and disconnect (keeping the session unless `end_session`)."""
        self._stop.set()
        self._urgent_ready.set()
        for thread in (self._urgent_thread, self._thread):
            if thread is not None:
                thread.join(timeout=30)
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0  # the broker drops the session and its membership of the group
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()
        self.client.loop_stop()

    # --- writer thread -----------------------------------------------------------------------

    def _take(self) -> list[Incoming]:
        """Up to batch_size bulk messages, waiting at most batch_wait for more."""
        pending = self._queue
        deadline = time.monotonic() + self.options.batch_wait
        while len(pending) < self.options.batch_size and time.monotonic() < deadline:
            time.sleep(0.002 if pending else 0.01)
        count = min(len(pending), self.options.batch_size)
        return [pending.popleft() for _ in range(count)]

    def _take_urgent(self) -> list[Incoming]:
        """What is in the life-safety lane, at once (waits up to 5 ms for the first one)."""
        lane = self._urgent
        if not lane:  # what a full batch left behind is taken at once, without waiting for a new arrival
            if not self._urgent_ready.wait(0.005 if not self._stop.is_set() else 0):
                return []
        self._urgent_ready.clear()
        return [lane.popleft() for _ in range(min(len(lane), self.options.batch_size))]

    def _write_loop(self) -> None:
        self._drain(lambda: self._queue, self._take)

    def _urgent_loop(self) -> None:
        # Its own thread and transaction: an alarm never waits for the bulk batch in progress.
        self._drain(lambda: self._urgent, self._take_urgent)

    def _drain(self, lane: Callable[[], deque[Incoming]], take: Callable[[], list[Incoming]]) -> None:
        while not (self._stop.is_set() and not lane()):
            batch = take()
            self.counters.queued = len(self._queue) + len(self._urgent)
            if not batch:
                continue
            started = time.perf_counter()
            try:
                result = self._write_until_done(batch)
            except _Abandon:
                log.warning("stopping with %s messages unwritten; the broker will deliver them again", len(batch))
                return
            self._ack(batch)
            self._count(batch, result)
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
            if result.new_alarms and self.on_alarms is not None:
                log.info("batch of %s with %s new alarm(s): oldest message waited %.0f ms", len(batch),
                         len(result.new_alarms), (time.time() - min(m.received for m in batch)) * 1000)
                self.on_alarms(result.new_alarms)

    def _write_until_done(self, batch: list[Incoming]) -> BatchResult:
        """`_write`, tried again on any other failure: the writer thread never dies, the batch stays unacknowledged."""
        while True:
            try:
                return self._write(batch)
            except _Abandon:
                raise
            except Exception:  # e.g. the database went away while a dead letter was being written
                self.counters.db_retries += 1
                if self._stop.is_set():
                    raise _Abandon from None
                log.exception("batch of %s not written; retrying", len(batch))
                time.sleep(self.options.retry_seconds)

    def _write(self, batch: list[Incoming]) -> BatchResult:
        """Write a batch, retrying a database that is away; split a batch that fails for another reason."""
        attempts = 0
        while True:
            try:
                return self.writer.write(batch)
            except DBAPIError as err:
                attempts += 1
                self.counters.db_retries += 1
                # A database that is away or busy is waited for, for ever; a row the database refuses
                # (data or integrity error) is looked for by splitting the batch.
                transient = isinstance(err, OperationalError) or err.connection_invalidated or attempts < 2
                if transient:
                    if self._stop.is_set():
                        raise _Abandon from err  # not acknowledged: the broker sends it again
                    log.warning("batch of %s not written (%s); retrying", len(batch), err.orig)
                    time.sleep(self.options.retry_seconds)
                    continue
                if len(batch) == 1:
                    return self._dead_letter(batch[0], f"write failed: {err.orig}")
                middle = len(batch) // 2
                left, right = self._write(batch[:middle]), self._write(batch[middle:])
                return _merge(left, right)

    def _dead_letter(self, message: Incoming, detail: str) -> BatchResult:
        with self.writer.engine.begin() as conn:
            conn.execute(DeadLetter.__table__.insert(), [{  # type: ignore[attr-defined]
                "received_at": utcnow(), "topic": protocol.pg_text(message.topic[:300]), "reason": "write_error",
                "detail": protocol.pg_text(detail[:1000]), "payload": message.payload}])
        result = BatchResult(dead_letters=1)
        result.reasons["write_error"] += 1
        return result

    def _ack(self, batch: list[Incoming]) -> None:
        """Acknowledge the batch: one write of all its PUBACKs, not one wake-up of paho's loop per message."""
        generation = self._generation
        # A message from an earlier connection is sent again by the broker; its old mid may now
        # name another message, so only this connection's messages are acknowledged.
        mids = [m.mid for m in batch if m.generation == generation and m.qos == 1]
        if not mids:
            return
        if hasattr(self.client, "_packet_queue"):
            # paho 2's client.ack() queues one 4-byte PUBACK and wakes its loop each time (a syscall per
            # message); the same packets, concatenated, go out in one queued write.
            packet = b"".join(struct.pack("!BBH", PUBACK, 2, mid) for mid in mids)
            self.client._packet_queue(PUBACK, packet, 0, 0)
        else:  # pragma: no cover - another paho version
            for mid in mids:
                self.client.ack(mid, 1)

    def _count(self, batch: list[Incoming], result: BatchResult) -> None:
        with self._count_lock:
            self._count_locked(batch, result)

    def _count_locked(self, batch: list[Incoming], result: BatchResult) -> None:
        c = self.counters
        c.batches += 1
        c.written += result.written
        c.duplicates += result.duplicates
        c.dead_lettered += result.dead_letters
        c.alarms += len(result.new_alarms)
        c.records += result.records
        c.lag_seconds = round(time.time() - min(m.received for m in batch), 3)

    def snapshot(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        data = asdict(self.counters)
        data["queued"] = len(self._queue) + len(self._urgent)
        data["client_id"] = self.client_id
        return data


def _merge(left: BatchResult, right: BatchResult) -> BatchResult:
    merged = BatchResult(accepted=left.accepted + right.accepted, written=left.written + right.written,
                         duplicates=left.duplicates + right.duplicates,
                         dead_letters=left.dead_letters + right.dead_letters,
                         new_alarms=left.new_alarms + right.new_alarms, records=left.records + right.records)
    for part in (left, right):
        for reason, count in part.reasons.items():
            merged.reasons[reason] += count
    return merged

