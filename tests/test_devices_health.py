"""Device health (offline once per device, back online, low battery) and downlink commands on a real broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli.devices import commands
from linli.devices.fastpath import open_alarm_case
from linli.devices.health import sweep
from linli.devices.ingest import IngestOptions, IngestService
from linli.devices.writer import BatchWriter, Incoming
from linli.errors import ValidationError
from linli.models import Alarm, AlarmStatus, Case, CaseSource, Device, DeviceCommand, DeviceState, utcnow
from linli.models.devices import CommandStatus
from tests.device_factories import devices, message
from tests.factories import CONFIG
from tests.mqtt_broker import Broker, mosquitto_path, run_broker


def test_a_silent_device_goes_offline_with_one_case_until_it_is_back(engine: Engine, session: Session) -> None:
    made = devices(session, ("S-1", "smoke"), ("S-2", "smoke"))
    writer = BatchWriter(engine)
    writer.write([Incoming(*message("heartbeat", "smoke", code, {"battery": 90})) for code in ("S-1", "S-2")])
    later = utcnow() + timedelta(seconds=made["S-1"].heartbeat_seconds * 2 + 5)
    session.expire_all()  # ingest wrote through its own connection
    report = sweep(session, now=later, factor=2)
    session.commit()
    assert sorted(report.offline) == ["S-1", "S-2"] and len(report.new_alarms) == 2
    for alarm_id, category in report.new_alarms:
        open_alarm_case(engine, alarm_id, category, config=CONFIG)
    # S-2 is heard from again; S-1 stays silent: a second sweep opens nothing new
    writer.write([Incoming(*message("heartbeat", "smoke", "S-2", {}))])
    session.expire_all()
    again = sweep(session, now=utcnow(), factor=2)
    session.commit()
    assert again.new_alarms == [] and again.back_online == ["S-2"]
    alarms = {a.device_id: a for a in session.execute(select(Alarm)).scalars()}
    assert alarms[made["S-1"].id].status == AlarmStatus.active
    assert alarms[made["S-2"].id].status == AlarmStatus.cleared
    assert alarms[made["S-2"].id].cleared_by == "system:device-health"
    cases = session.execute(select(Case)).scalars().all()
    assert len(cases) == 2 and all(c.source == CaseSource.device_health for c in cases)
    assert session.get(Device, made["S-1"].id).state == DeviceState.offline  # type: ignore[union-attr]


def test_low_battery_is_flagged_once_and_cleared_after_a_change(engine: Engine, session: Session) -> None:
    devices(session, ("D-1", "door_magnet"))
    writer = BatchWriter(engine)
    writer.write([Incoming(*message("heartbeat", "door_magnet", "D-1", {"battery": 12}))])
    session.expire_all()
    first = sweep(session, now=utcnow(), low_battery=20)
    second = sweep(session, now=utcnow(), low_battery=20)
    session.commit()
    assert first.low_battery == ["D-1"] and second.low_battery == []
    writer.write([Incoming(*message("heartbeat", "door_magnet", "D-1", {"battery": 100}))])
    session.expire_all()
    sweep(session, now=utcnow(), low_battery=20)
    session.commit()
    alarm = session.execute(select(Alarm)).scalar_one()
    assert alarm.alarm_type == "low_battery" and alarm.status == AlarmStatus.cleared


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free port."""
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (run `python -m tests.services` as root)")
    with run_broker(tmp_path) as running:
        yield running


class FakeLoudspeaker:
    """A device on the broker that answers each command on its cmd topic with a cmd_ack."""

    def __init__(self, broker: Broker, code: str) -> None:
        self.code = code
        self.got: list[dict[str, object]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{code}", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(f"linli/XFL/loudspeaker/{code}/cmd", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._answer
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _answer(self, client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        command = json.loads(msg.payload)
        self.got.append(command)
        ack = {"ts": time.time(), "cmd_id": command["cmd_id"], "ok": True, "detail": "played",
               "state": {"volume": 60}}
        client.publish(f"linli/XFL/loudspeaker/{self.code}/cmd_ack", json.dumps(ack), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_broadcast_round_trip_and_a_command_that_times_out(engine: Engine, session: Session,
                                                             broker: Broker) -> None:
    devices(session, ("L-1", "loudspeaker"), ("L-2", "loudspeaker"), ("G-1", "access_gate"))
    service = IngestService(BatchWriter(engine), IngestOptions(host=broker.host, port=broker.port,
                                                               client_id="cmd-test", batch_wait=0.01))
    service.start()
    speaker = FakeLoudspeaker(broker, "L-1")
    try:
        with commands.MqttPublisher(broker.host, broker.port) as publish:
            sent = commands.send(session, publish, device_code="L-1", command="broadcast",
                                 args={"text": "今晚8点停水，请提前储水"}, requested_by="staff:3", timeout_seconds=10)
            answered = commands.wait_for_answer(engine, sent.cmd_id)
            silent = commands.send(session, publish, device_code="L-2", command="reset", timeout_seconds=0.5)
            timed_out = commands.wait_for_answer(engine, silent.cmd_id)
            with pytest.raises(ValidationError, match="broadcast"):
                commands.send(session, publish, device_code="G-1", command="broadcast", args={"text": "x"})
    finally:
        speaker.close()
        service.stop()
    assert speaker.got[0]["command"] == "broadcast" and speaker.got[0]["args"] == {"text": "今晚8点停水，请提前储水"}
    assert answered.status == CommandStatus.acked and answered.result["detail"] == "played"
    assert answered.requested_by == "staff:3" and answered.answered_at is not None
    assert timed_out.status == CommandStatus.timeout
    assert session.execute(select(func.count()).select_from(DeviceCommand)).scalar_one() == 2  # refused: not sent
