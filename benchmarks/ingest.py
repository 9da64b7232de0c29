"""Ingest throughput: N QoS 1 messages from the simulator into the database, against a subscribe-only client.

Both consumers drain the same N messages, queued for them by the same broker in the same run
(each has a persistent session that was subscribed before the messages were published), so the
figure does not depend on how fast the publisher is:

    subscribe-only   paho client, QoS 1, acknowledges each message on arrival, stores nothing;
    subscribe-only, buffered reads
                     the same, on the client ingest uses (linli/devices/mqttclient.py: paho with a
                     read buffer and many packets per loop turn) — the fastest a Python client here
                     can take messages off the broker, so its ratio shows what ingest's own work costs;
    ingest           Linli's ingest replica: validates, writes in batches, evaluates alarm rules,
                     writes outbox rows, acknowledges after commit.

Zero lost: the rows in the database are checked against what was published.
Goal (DESIGN.md): ≥ 10,000 msg/s into the database and ≥ 0.8 of the subscribe-only rate.

    .venv/bin/python -m benchmarks.ingest [--messages 50000] [--database sqlite]

Queueing for three offline sessions makes Mosquitto 2.0.11 (Debian's) slow down as the queues grow:
here 90,000 messages took 198 s to publish and the publisher was then dropped. Stay near 50,000.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select
from sqlmodel import Session

from benchmarks.common import fleet, fresh_database, last_line
from linli import db
from linli.devices import protocol
from linli.devices.ingest import IngestOptions, IngestService
from linli.devices.mqttclient import FastClient
from linli.devices.simulator import Generator, publisher
from linli.devices.writer import BatchWriter
from linli.models import DeviceEvent, Telemetry
from tests.mqtt_broker import run_broker


class Drain:
    """A subscribe-only client with a persistent session; counts what it receives."""

    def __init__(self, host: str, port: int, *, buffered: bool = False) -> None:
        self.host, self.port = host, port
        self.count = 0
        self.done = threading.Event()
        self.target = 0
        client_class = FastClient if buffered else mqtt.Client
        self.client = client_class(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                   client_id="bench-subscribe-only" + ("-buffered" if buffered else ""))
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(protocol.subscription(), qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()

    def _on_message(self, *_args: object) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 65535
        self.subscribed.clear()
        self.client.connect(self.host, self.port, clean_start=False, properties=props)
        self.client.loop_start()
        self.subscribed.wait(10)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 50,000: Mosquitto 2.0 slows down sharply once ~60,000 messages are queued for one offline session
    # (measured: publishing 100,000 took ~90 s and timed the publisher out), which is how both consumers
    # are fed here.
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--database", default="auto", help="auto, postgresql or sqlite")
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, run_broker(Path(folder)) as broker, \
            fresh_database(args.database) as url:
        engine = db.engine_for(url)
        devices = fleet(url)
        generator = Generator(devices)
        messages = [generator.uplink(devices[i % len(devices)]) for i in range(args.messages)]
        expected_telemetry = sum(1 for t, _ in messages if t.endswith("/telemetry"))
        expected_events = sum(1 for t, _ in messages if t.endswith("/event"))

        # Both consumers subscribe once, then go away: the broker keeps their sessions and queues for them.
        drain = Drain(broker.host, broker.port)
        drain.connect()
        drain.disconnect()
        fast_drain = Drain(broker.host, broker.port, buffered=True)
        fast_drain.connect()
        fast_drain.disconnect()
        options = IngestOptions(host=broker.host, port=broker.port, client_id="bench-ingest", shared_group="",
                                batch_size=args.batch_size, batch_wait=0.02)
        service = IngestService(BatchWriter(engine), options)
        service.start()
        service.stop()

        started = time.perf_counter()
        client = publisher(broker.host, broker.port)
        infos = []
        for index, (name, payload) in enumerate(messages):
            if index >= 30000:  # MQTT packet ids are 16-bit: keep fewer than 65,536 unacknowledged
                infos[index - 30000].wait_for_publish(timeout=120)
            infos.append(client.publish(name, payload, qos=1))
        for info in infos:
            info.wait_for_publish(timeout=120)
        publish_seconds = time.perf_counter() - started
        client.disconnect()
        client.loop_stop()

        drain.target = args.messages
        started = time.perf_counter()
        drain.connect()
        drain.done.wait(600)
        subscribe_seconds = time.perf_counter() - started
        drain.disconnect()

        fast_drain.target = args.messages
        started = time.perf_counter()
        fast_drain.connect()
        fast_drain.done.wait(600)
        fast_seconds = time.perf_counter() - started
        fast_drain.disconnect()

        service = IngestService(BatchWriter(engine), options)
        started = time.perf_counter()
        service.start()
        while service.counters.written + service.counters.duplicates + service.counters.dead_lettered \
                < args.messages:
            time.sleep(0.01)
            if time.perf_counter() - started > 900:
                break
        ingest_seconds = time.perf_counter() - started
        counters = service.snapshot()
        service.stop()
        with Session(engine) as session:
            telemetry = session.execute(select(func.count()).select_from(Telemetry)).scalar_one()
            events = session.execute(select(func.count()).select_from(DeviceEvent)).scalar_one()
        backend = engine.dialect.name

    subscribe_rate = drain.count / subscribe_seconds
    fast_rate = fast_drain.count / fast_seconds
    ingest_rate = counters["written"] / ingest_seconds
    lost = (expected_telemetry - telemetry) + (expected_events - events) + (args.messages - counters["written"])
    print(f"published {args.messages} QoS 1 messages in {publish_seconds:.1f} s "
          f"({args.messages / publish_seconds:,.0f} msg/s)")
    print(f"subscribe-only client: {drain.count} in {subscribe_seconds:.2f} s = {subscribe_rate:,.0f} msg/s")
    print(f"subscribe-only client, buffered reads: {fast_drain.count} in {fast_seconds:.2f} s = "
          f"{fast_rate:,.0f} msg/s")
    print(f"ingest into {backend}: {counters['written']} in {ingest_seconds:.2f} s = {ingest_rate:,.0f} msg/s "
          f"({counters['batches']} batches, {telemetry} telemetry rows, {events} event rows)")
    print(f"ratio ingest / subscribe-only: {ingest_rate / subscribe_rate:.2f}; "
          f"ingest / buffered subscribe-only: {ingest_rate / fast_rate:.2f}; lost: {lost}")
    print(json.dumps(counters))
    last_line({"benchmark": "ingest", "messages": args.messages, "database": backend,
               "ingest_msg_per_s": round(ingest_rate), "subscribe_only_msg_per_s": round(subscribe_rate),
               "ratio": round(ingest_rate / subscribe_rate, 3),
               "subscribe_only_buffered_msg_per_s": round(fast_rate),
               "ratio_to_buffered": round(ingest_rate / fast_rate, 3), "lost": lost,
               "goal_msg_per_s": 10_000, "goal_ratio": 0.8})


if __name__ == "__main__":
    main()
