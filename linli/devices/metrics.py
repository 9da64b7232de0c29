"""Ingest's status port: its counters as JSON at ``/``, a health check at ``/health``, Prometheus text at ``/metrics``.

The message counters are the service's own (`IngestService.counters`), read when Prometheus scrapes:
the hot path pays nothing for them. Only two histograms are observed as work happens — one
observation per written batch (its write time) and one per alarm notified (the reading's time →
Apprise sent) — never per message. Each replica has its own registry and port.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from linli.devices.ingest import IngestService

log = logging.getLogger(__name__)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ALARM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
# (counter name, help, key in IngestService.snapshot())
COUNTERS = (
    ("linli_ingest_messages_received", "MQTT messages received.", "received"),
    ("linli_ingest_messages_written", "Messages written to the database.", "written"),
    ("linli_ingest_messages_duplicate", "Messages already stored (a redelivery), not written again.", "duplicates"),
    ("linli_ingest_messages_dead_lettered", "Messages refused and kept in the dead-letter table.", "dead_lettered"),
    ("linli_ingest_alarms", "New alarms raised.", "alarms"),
    ("linli_ingest_records", "Access and vehicle records written.", "records"),
    ("linli_ingest_batches", "Batches committed.", "batches"),
    ("linli_ingest_db_retries", "Batch writes retried because the database failed.", "db_retries"),
)


class _CountersCollector(Collector):
    """The service's counters and gauges, read at scrape time."""

    def __init__(self, service: IngestService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        snap = self.service.snapshot()
        for name, text, key in COUNTERS:
            yield CounterMetricFamily(name, text, value=snap[key])
        yield GaugeMetricFamily("linli_ingest_queue_depth", "Messages received, not yet written.",
                                value=snap["queued"])
        yield GaugeMetricFamily("linli_ingest_lag_seconds", "Receipt → commit of the last batch (seconds).",
                                value=snap["lag_seconds"])
        yield GaugeMetricFamily("linli_ingest_connected", "1 while connected to the broker.",
                                value=1 if snap["connected"] else 0)


class IngestMetrics:
    """One replica's Prometheus registry: its counters plus the batch and alarm latency histograms."""

    def __init__(self, service: IngestService) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_CountersCollector(service))
        self.batch_seconds = Histogram("linli_ingest_batch_write_seconds", "Time to write and commit one batch.",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        self.alarm_notify_seconds = Histogram(
            "linli_ingest_alarm_notify_seconds", "A life-safety alarm's reading (device time) → its notices sent.",
            buckets=ALARM_BUCKETS, registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one committed batch (called once per batch by the service)."""
        self.batch_seconds.observe(seconds)

    def observe_notified(self, reading_at: datetime, sent_at: datetime) -> None:
        """Record one alarm whose notices were sent (called by the fast path)."""
        if reading_at.tzinfo is None:  # SQLite gives naive UTC back
            reading_at = reading_at.replace(tzinfo=UTC)
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        self.alarm_notify_seconds.observe(max(0.0, (sent_at - reading_at).total_seconds()))

    def render(self) -> bytes:
        """The Prometheus text exposition of this replica."""
        return generate_latest(self.registry)


def serve_status(metrics: IngestMetrics, port: int) -> ThreadingHTTPServer:
    """Serve `/` (counters as JSON), `/health` and `/metrics` on 127.0.0.1:<port> from a thread."""
    service = metrics.service

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            path = self.path.split("?", 1)[0]
            status = 200
            if path == "/metrics":
                body, kind = metrics.render(), CONTENT_TYPE_LATEST
            elif path == "/health":
                connected = bool(service.counters.connected)
                status = 200 if connected else 503
                body, kind = json.dumps({"connected": connected}).encode(), "application/json"
            else:
                body, kind = json.dumps(service.snapshot()).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug(format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ingest-status", daemon=True).start()
    return server
