"""The buffered paho client ingest uses: every byte of every packet arrives, across chunk boundaries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from linli.devices import mqttclient
from linli.devices.mqttclient import BufferedSocket, FastClient
from linli.devices.simulator import publisher
from tests.mqtt_broker import Broker, run_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with run_broker(tmp_path) as running:
        yield running


def _receive(broker: Broker, client_class: type[mqtt.Client], messages: list[tuple[str, bytes]],
             client_id: str) -> list[tuple[str, bytes]]:
    """Queue `messages` for a persistent session, then connect and take them all at once."""
    got: list[tuple[str, bytes]] = []
    done, subscribed = threading.Event(), threading.Event()
    client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append((message.topic, message.payload))
        if len(got) == len(messages):
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("t/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = 65535
    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    client.loop_start()
    assert subscribed.wait(10)
    client.disconnect()
    client.loop_stop()

    sender = publisher(broker.host, broker.port)
    for info in [sender.publish(name, payload, qos=1) for name, payload in messages]:
        info.wait_for_publish(timeout=60)
    sender.disconnect()
    sender.loop_stop()

    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    client.loop_start()
    assert done.wait(60), f"{len(got)} of {len(messages)} arrived"
    client.disconnect()
    client.loop_stop()
    return got


def test_the_buffered_client_receives_every_packet_whole_and_in_order(broker: Broker,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A small read chunk makes packets straddle chunk boundaries all the time; the large payloads are
    # bigger than a chunk and must be read in several pieces.
    monkeypatch.setattr(mqttclient, "CHUNK", 1000)
    messages = [(f"t/{i % 7}", (b"%d:" % i) + bytes([i % 251]) * (i * 37 % 900)) for i in range(3000)]
    messages[100] = ("t/big", b"x" * 300_000)
    messages[2000] = ("t/big", bytes(range(256)) * 1000)
    assert _receive(broker, FastClient, messages, "fast") == messages


def test_the_buffered_client_reads_in_large_chunks(broker: Broker) -> None:
    reads: list[int] = []
    original = BufferedSocket.recv

    def counting(self: BufferedSocket, size: int) -> bytes:
        if self.pending() == 0:
            reads.append(size)
        return original(self, size)

    BufferedSocket.recv = counting  # type: ignore[method-assign]
    try:
        messages = [(f"t/{i}", b'{"v": %d}' % i) for i in range(2000)]
        assert _receive(broker, FastClient, messages, "chunks") == messages
    finally:
        BufferedSocket.recv = original  # type: ignore[method-assign]
    # paho alone asks the socket 3 times a packet (command byte, length, body): 6,000+ reads.
    assert len(reads) < 2000, f"{len(reads)} socket reads for 2,000 packets"
