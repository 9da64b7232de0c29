"""The ingest service on a real Mosquitto: crash and restart, dead letters, shared subscription, fast path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli.devices.ingest import IngestOptions, IngestService
from linli.devices.simulator import publisher
from linli.devices.writer import BatchWriter
from linli.events import RecordingBus
from linli.models import Alarm, Case, CaseSource, DeadLetter, Notification, NotificationStatus, Telemetry
from linli.receiver import NotificationReceiver
from linli.settings import REPO_ROOT, Settings
from tests.device_factories import devices, message
from tests.mqtt_broker import Broker, free_port, mosquitto_path, run_broker

pytestmark = pytest.mark.skipif(mosquitto_path() is None,
                                reason="mosquitto is not installed (run `python -m tests.services` as root)")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh Mosquitto on a free port."""
    with run_broker(tmp_path) as running:
        yield running


def _count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _publish_all(broker: Broker, messages: list[tuple[str, bytes]], *, pace: float = 0.0) -> None:
    """Publish at QoS 1 and wait until the broker has acknowledged every message."""
    client = publisher(broker.host, broker.port)
    infos = []
    for index, (name, payload) in enumerate(messages):
        infos.append(client.publish(name, payload, qos=1))
        if pace and index % 100 == 99:
            time.sleep(pace)
    for info in infos:
        info.wait_for_publish(timeout=30)
    client.disconnect()
    client.loop_stop()


def _ingest_process(database_url: str, broker: Broker, tmp_path: Path, port: int,
                    *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LINLI_DATABASE__URL=database_url, LINLI_MQTT__PORT=str(broker.port),
               LINLI_DATA_DIR=str(tmp_path / "data"), LINLI_PREFECT__API_URL="http://127.0.0.1:9/api",
               LINLI_DEVICES__BATCH_SIZE="200")
    log = (tmp_path / f"ingest-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "linli.cli", "ingest", "--client-id", "ingest-under-test",
                             "--status-port", str(port), "--report-every", "1", *extra],
                            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _status(port: int) -> dict[str, int]:
    try:
        return dict(httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json())
    except httpx.HTTPError:
        return {}


def test_ingest_killed_mid_stream_and_restarted_stores_every_message_once(
        engine: Engine, session: Session, database_url: str, broker: Broker, tmp_path: Path) -> None:
    devices(session, ("G-1", "gas"), ("S-1", "smoke"))
    total = 4000
    batch = [message("telemetry", "gas" if i % 2 else "smoke", "G-1" if i % 2 else "S-1",
                     {"id": f"m{i}", "metrics": {"gas_lel": 1.0} if i % 2 else {"temperature": 22.0}})
             for i in range(total)]
    port = free_port()
    first = _ingest_process(database_url, broker, tmp_path, port)
    try:
        _wait(lambda: _status(port).get("connected") is True, 60, "ingest to connect")
        sender = threading.Thread(target=_publish_all, args=(broker, batch), kwargs={"pace": 0.01})
        sender.start()
        _wait(lambda: _count(engine, Telemetry) >= 300, 60, "the first messages to be written")
        first.send_signal(signal.SIGKILL)  # a crash: no clean shutdown, messages in flight unacknowledged
        first.wait(timeout=10)
        stored_at_crash = _count(engine, Telemetry)
        sender.join(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert stored_at_crash < total, "the crash came too late to prove anything"
    second = _ingest_process(database_url, broker, tmp_path, port)
    try:
        _wait(lambda: _count(engine, Telemetry) >= total, 90, f"all {total} messages to be stored")
        time.sleep(1.0)  # anything redelivered twice would land now
        keys = session.execute(select(Telemetry.msg_key)).scalars().all()
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert len(keys) == total and set(keys) == {f"m{i}" for i in range(total)}


@pytest.fixture
def ingest_settings(settings: Settings, broker: Broker) -> Settings:
    """Settings pointing at the test broker, Prefect unreachable."""
    return settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"port": broker.port})})


def _service(engine: Engine, broker: Broker, client_id: str, **kwargs: object) -> IngestService:
    service = IngestService(BatchWriter(engine), IngestOptions(host=broker.host, port=broker.port,
                                                               client_id=client_id, batch_wait=0.02), **kwargs)
    service.start()
    return service


def test_malformed_payloads_are_dead_lettered_and_ingest_goes_on(
        engine: Engine, session: Session, broker: Broker) -> None:
    devices(session, ("G-1", "gas"))
    service = _service(engine, broker, "dead-letter-test")
    try:
        bad = [
            ("linli/XFL/gas/G-1/telemetry", b"this is not json"),
            ("linli/XFL/gas/G-1/telemetry", json.dumps({"ts": time.time(), "metrics": {"gas_lel": "lots"}}).encode()),
            ("linli/XFL/gas/GHOST/heartbeat", json.dumps({"ts": time.time()}).encode()),
            ("linli/XFL/gas/G-1/telemetry", b'{"ts": 1, "metrics": {"gas_lel": 1}, "pad": "' + b"x" * 300_000 + b'"}'),
            ("linli/XFL/gas/G-1/whatever", b"{}"),
        ]
        _publish_all(broker, bad + [message("telemetry", "gas", "G-1", {"id": "ok", "metrics": {"gas_lel": 2}})])
        _wait(lambda: _count(engine, DeadLetter) == 5 and _count(engine, Telemetry) == 1, 20, "dead letters")
    finally:
        service.stop()
    rows = session.execute(select(DeadLetter).order_by(DeadLetter.id)).scalars().all()
    assert sorted(r.reason for r in rows) == sorted(["bad_json", "schema", "unknown_device", "oversized", "bad_topic"])
    assert all(r.detail for r in rows)
    assert next(r for r in rows if r.reason == "bad_json").payload == b"this is not json"
    assert service.counters.dead_lettered == 5 and service.counters.written == 1


def test_two_replicas_on_a_shared_subscription_store_each_message_once(
        engine: Engine, session: Session, broker: Broker) -> None:
    devices(session, ("G-1", "gas"))
    one, two = _service(engine, broker, "replica-1"), _service(engine, broker, "replica-2")
    total = 2000
    try:
        _publish_all(broker, [message("telemetry", "gas", "G-1", {"id": f"m{i}", "metrics": {"gas_lel": 1.0}})
                              for i in range(total)])
        _wait(lambda: _count(engine, Telemetry) >= total, 30, "all messages")
        time.sleep(0.5)
    finally:
        one.stop()
        two.stop()
    assert _count(engine, Telemetry) == total
    assert one.counters.received > 0 and two.counters.received > 0  # the load was shared …
    assert one.counters.received + two.counters.received == total  # … and each message went to one replica
    assert one.counters.duplicates + two.counters.duplicates == 0


def test_a_gas_leak_notifies_on_duty_staff_and_opens_a_case(
        engine: Engine, session: Session, ingest_settings: Settings, broker: Broker) -> None:
    from linli.devices.service import start_ingest

    devices(session, ("G-1", "gas"))
    bus = RecordingBus()
    with NotificationReceiver() as receiver:
        settings = ingest_settings.model_copy(update={"notify": ingest_settings.notify.model_copy(
            update={"urls": [receiver.apprise_url()]})})
        replica = start_ingest(settings, client_id="fast-path", engine=engine, bus=bus, status_port=0,
                               rules=None)
        try:
            _publish_all(broker, [message("telemetry", "gas", "G-1", {"id": "leak", "metrics": {"gas_lel": 42.0}}),
                                  message("telemetry", "gas", "G-1", {"id": "leak2", "metrics": {"gas_lel": 45.0}})])
            arrived = receiver.wait_for(lambda m: "燃气泄漏" in (m["json"] or {}).get("title", ""), timeout=20)
            _wait(lambda: bool(bus.events), 20, "the case event")
        finally:
            replica.stop()
    text = arrived[0]["json"]["message"]
    assert "幸福里社区" in arrived[0]["json"]["title"] and "G-1" in text and "gas_lel=4" in text
    alarm = session.execute(select(Alarm)).scalar_one()
    assert alarm.count == 2 and alarm.notified_at is not None  # the second reading counted, not re-notified
    case = session.get(Case, alarm.case_id)
    assert case is not None and case.source == CaseSource.device_alarm
    assert bus.names() == ["linli.case.reported"]
    sent = session.execute(select(Notification).where(Notification.kind == "alarm")).scalars().all()
    assert sent and all(n.status == NotificationStatus.sent and n.case_id == case.id for n in sent)
    # the grid worker of XFL-B1's grid and the community's security team
    assert len(sent) == len(receiver.messages) >= 2


class _HeldWriter(BatchWriter):
    """A writer whose bulk batches wait for `release`: a slow bulk transaction in progress."""

    def __init__(self, engine: Engine, release: threading.Event) -> None:
        super().__init__(engine)
        self.release = release
        self.holding = threading.Event()

    def write(self, batch: list) -> object:  # type: ignore[override]
        if not all(self.urgent(m.topic) for m in batch):
            self.holding.set()
            self.release.wait(30)
        return super().write(batch)


def test_a_life_safety_alarm_is_written_and_handed_over_while_a_bulk_batch_is_in_progress(
        engine: Engine, session: Session, broker: Broker) -> None:
    devices(session, ("G-1", "gas"), ("G-2", "gas"))
    release = threading.Event()
    writer = _HeldWriter(engine, release)
    raised: list[object] = []
    service = IngestService(writer, IngestOptions(host=broker.host, port=broker.port, client_id="lanes",
                                                  batch_wait=0.02), on_alarms=raised.extend)
    service.start()
    try:
        _publish_all(broker, [message("heartbeat", "gas", "G-2", {"id": "hb1", "battery": 90})])
        _wait(writer.holding.is_set, 10, "the bulk batch to start")
        _publish_all(broker, [message("telemetry", "gas", "G-1", {"id": "leak", "metrics": {"gas_lel": 42.0}})])
        _wait(lambda: bool(raised), 20, "the alarm while the bulk batch is held open")
        assert not release.is_set() and _count(engine, Alarm) == 1 and _count(engine, Telemetry) == 1
    finally:
        release.set()
        service.stop()
    assert service.counters.written == 2 and service.counters.alarms == 1  # the held batch was written too


def test_a_retired_replica_hands_over_what_was_kept_for_it_and_leaves_the_group(
        engine: Engine, session: Session, broker: Broker) -> None:
    devices(session, ("G-1", "gas"))
    staying = _service(engine, broker, "replica-stays")
    going = _service(engine, broker, "replica-goes")
    going.stop()  # a stop keeps the session: the broker goes on keeping a share of the messages for it
    try:
        _publish_all(broker, [message("telemetry", "gas", "G-1", {"id": f"a{i}", "metrics": {"gas_lel": 1.0}})
                              for i in range(200)])
        _wait(lambda: staying.counters.received > 0, 20, "the staying replica's share")
        time.sleep(1)
        kept = 200 - staying.counters.received
        assert kept > 0, "the stopped member should have been kept a share"
        assert _count(engine, Telemetry) == staying.counters.received

        retiring = _service(engine, broker, "replica-goes")
        retiring.retire(quiet_seconds=1)
        assert retiring.counters.received == kept  # what was kept for it is written, not lost
        assert _count(engine, Telemetry) == 200

        # After retiring, the group is the one replica: it gets every new message.
        before = staying.counters.received
        _publish_all(broker, [message("telemetry", "gas", "G-1", {"id": f"b{i}", "metrics": {"gas_lel": 1.0}})
                              for i in range(100)])
        _wait(lambda: _count(engine, Telemetry) == 300, 20, "every new message")
        assert staying.counters.received - before == 100
    finally:
        staying.stop()


def test_an_ingest_stopped_with_retire_on_stop_leaves_no_member_behind(
        engine: Engine, session: Session, database_url: str, broker: Broker, tmp_path: Path) -> None:
    # The demo's ingest: on SIGTERM it ends its session, so a later replica on the same broker gets
    # every message instead of sharing them with a member that is gone.
    devices(session, ("G-1", "gas"))
    port = free_port()
    demo = _ingest_process(database_url, broker, tmp_path, port, "--retire-on-stop")
    try:
        _wait(lambda: _status(port).get("connected") is True, 60, "ingest to connect")
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
    later = _service(engine, broker, "production-replica")
    try:
        _publish_all(broker, [message("telemetry", "gas", "G-1", {"id": f"p{i}", "metrics": {"gas_lel": 1.0}})
                              for i in range(100)])
        _wait(lambda: _count(engine, Telemetry) >= 100, 20, "every message written by the one live replica")
        assert later.counters.received == 100
    finally:
        later.stop()
