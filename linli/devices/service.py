"""Assemble an ingest replica from the settings: writer, MQTT service, alarm fast path, rules refresh, and the
coalesced `linli.datahub.pending` announcement that starts data-hub pushes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine

from linli import db
from linli.datahub import PendingAnnouncer
from linli.devices.fastpath import AlarmFastPath
from linli.devices.ingest import IngestOptions, IngestService
from linli.devices.metrics import IngestMetrics, serve_status
from linli.devices.registry import RuleBook
from linli.devices.rules_source import load_rules
from linli.devices.writer import BatchWriter
from linli.events import EventBus, PrefectEventBus, RecordingBus, SignalBus
from linli.loop import LoopConfig
from linli.notify import AppriseNotifier, Notifier
from linli.settings import Settings
from linli.storage import make_store

log = logging.getLogger(__name__)


@dataclass
class IngestReplica:
    """A running replica and what it is made of."""

    service: IngestService
    fast_path: AlarmFastPath
    stop_event: threading.Event
    threads: list[threading.Thread]
    status_server: Any = None
    metrics: IngestMetrics | None = None

    def stop(self, *, retire: bool = False, retire_timeout: float = 600.0) -> None:
        """Stop consuming, write and acknowledge what is queued, finish the fast path.

        `retire`: first take what the broker kept for this client id, then end the session (see
        IngestService.retire); otherwise the session stays for a restart with the same client id.
        """
        self.stop_event.set()
        if retire:
            self.service.retire(quiet_seconds=min(2.0, retire_timeout), timeout=retire_timeout)
        else:
            self.service.stop()
        self.fast_path.close()
        if self.status_server is not None:
            self.status_server.shutdown()


def default_bus(settings: Settings) -> EventBus:
    """Prefect's event system when its API answers, else a recording bus (the SLA watch restarts idle cases)."""
    try:
        if httpx.get(f"{settings.prefect_api_url}/health", timeout=2).status_code == 200:
            return PrefectEventBus()
    except httpx.HTTPError:
        pass
    log.warning("Prefect is not reachable at %s: alarm cases are filed, their events only recorded",
                settings.prefect_api_url)
    return RecordingBus()


def start_ingest(settings: Settings, *, client_id: str = "", engine: Engine | None = None,
                 bus: EventBus | None = None, notifier: Notifier | None = None,
                 status_port: int | None = None, rules: RuleBook | None = None) -> IngestReplica:
    """Start one ingest replica with these settings (the caller stops it)."""
    engine = engine or db.get_engine()
    store = make_store(settings)
    ds = settings.devices
    writer = BatchWriter(engine, rules=rules, store=store, max_payload=ds.max_payload_bytes)
    bus = bus or default_bus(settings)
    fast_path = AlarmFastPath(engine, notifier=notifier or AppriseNotifier(settings.notify.timeout_seconds),
                              global_urls=settings.notify.urls, config=LoopConfig.from_settings(settings),
                              bus=bus, store=store)
    options = IngestOptions(host=settings.mqtt.host, port=settings.mqtt.port, username=settings.mqtt.username,
                            password=settings.mqtt.password.get_secret_value(), client_id=client_id,
                            shared_group=ds.shared_group, batch_size=ds.batch_size,
                            batch_wait=ds.batch_wait_seconds)
    service = IngestService(writer, options, on_alarms=fast_path.submit)
    stop_event = threading.Event()
    threads = []
    if settings.datahub.signal_seconds > 0 and isinstance(bus, SignalBus):
        announcer = PendingAnnouncer(lambda: service.counters.records, bus.signal,
                                     interval=settings.datahub.signal_seconds)
        pending = threading.Thread(target=announcer.run, args=(stop_event,), name="datahub-pending", daemon=True)
        pending.start()
        threads.append(pending)
    if rules is None:
        refresh = threading.Thread(target=_refresh_rules, name="alarm-rules",
                                   args=(writer, settings, stop_event), daemon=True)
        refresh.start()
        threads.append(refresh)
    metrics = IngestMetrics(service)
    service.on_batch = metrics.observe_batch
    fast_path.on_notified = metrics.observe_notified
    service.start()
    port = ds.status_port if status_port is None else status_port
    server = serve_status(metrics, port) if port else None
    return IngestReplica(service, fast_path, stop_event, threads, server, metrics)


def _refresh_rules(writer: BatchWriter, settings: Settings, stop: threading.Event,
                   load: Callable[[str, str], RuleBook | None] = load_rules) -> None:
    """Re-read the alarm-rules block now and then; swap rules only when they changed."""
    current: tuple[Any, ...] | None = None
    while not stop.is_set():
        book = load(settings.prefect_api_url, settings.devices.alarm_rules_block)
        if book is not None and book.rules != current:
            writer.set_rules(book)
            current = book.rules
            log.info("alarm rules from block %r: %s rules", settings.devices.alarm_rules_block, len(book.rules))
        stop.wait(settings.devices.rules_refresh_seconds)
