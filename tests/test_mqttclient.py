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


def _live(broker: Broker, client_class: type[mqtt.Client], client_id: str,
          seen: list[tuple[object, ...]], *, filtered: bool = False) -> mqtt.Client:
    """A connected client recording every message's fields (properties as a dict) in `seen`."""
    subscribed = threading.Event()
    client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)

    def record(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        props = m.properties.json() if m.properties is not None else {}
        seen.append((m.topic, m.payload, m.qos, m.retain, bool(m.mid) == bool(m.qos), props))

    if filtered:
        client.message_callback_add("t/only/#", record)  # per-topic callbacks: paho's own matching
    else:
        client.on_message = record
    client.on_connect = lambda c, *_: c.subscribe("t/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert subscribed.wait(10)
    return client


def test_the_fast_decoder_gives_what_paho_gives_for_every_kind_of_publish(broker: Broker) -> None:
    fast_seen: list[tuple[object, ...]] = []
    paho_seen: list[tuple[object, ...]] = []
    filtered_seen: list[tuple[object, ...]] = []
    clients = [_live(broker, FastClient, "fast", fast_seen), _live(broker, mqtt.Client, "paho", paho_seen),
               _live(broker, FastClient, "filtered", filtered_seen, filtered=True)]
    sender = publisher(broker.host, broker.port)
    with_props = Properties(PacketTypes.PUBLISH)
    with_props.UserProperty = ("source", "gate-7")
    with_props.ContentType = "application/json"
    sent = [("t/a", b'{"v": 1}', 0, False, None), ("t/a", b'{"v": 2}', 1, False, None),
            ("t/only/x", b"", 1, False, None), ("t/b", b"\x00\xff binary", 1, False, with_props),
            ("t/only/y", b"retained", 1, True, None), ("t/c", "读数".encode(), 0, False, with_props)]
    for info in [sender.publish(t, p, qos=q, retain=r, properties=props) for t, p, q, r, props in sent]:
        info.wait_for_publish(timeout=10)
    sender.disconnect()
    sender.loop_stop()
    deadline = threading.Event()
    for _ in range(100):
        if len(fast_seen) == len(paho_seen) == len(sent) and len(filtered_seen) == 2:
            break
        deadline.wait(0.1)
    for client in clients:
        client.disconnect()
        client.loop_stop()
    assert fast_seen == paho_seen
    assert [(t, p) for t, p, *_ in fast_seen] == [(t, p) for t, p, *_ in sent]
    assert fast_seen[3][5] == {"UserProperty": [("source", "gate-7")], "ContentType": "application/json"}
    assert filtered_seen == [m for m in paho_seen if m[0].startswith("t/only/")]
    # A client subscribing afterwards gets the retained message with its retain flag set.
    late_fast: list[tuple[object, ...]] = []
    late_paho: list[tuple[object, ...]] = []
    late = [_live(broker, FastClient, "late-fast", late_fast), _live(broker, mqtt.Client, "late-paho", late_paho)]
    for _ in range(100):
        if late_fast and late_paho:
            break
        deadline.wait(0.1)
    for client in late:
        client.disconnect()
        client.loop_stop()
    assert late_fast == late_paho == [("t/only/y", b"retained", 1, True, True, {})]
