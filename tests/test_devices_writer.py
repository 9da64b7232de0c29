"""The batch writer (ingest without MQTT): validation, dead letters, idempotency, records, alarms."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli.devices.alarms import acknowledge, clear
from linli.devices.protocol import MAX_PAYLOAD_BYTES, Rejected, parse_payload, parse_topic, topic
from linli.devices.writer import BatchWriter, Incoming
from linli.errors import IllegalTransition
from linli.models import (
    AccessRecord,
    Alarm,
    AlarmStatus,
    DeadLetter,
    Device,
    DeviceEvent,
    DeviceState,
    OutboxRecord,
    Telemetry,
    VehicleRecord,
)
from linli.storage import LocalObjectStore
from tests.device_factories import devices, message


def _count(session: Session, model: type) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar_one()


def _in(*pairs: tuple[str, bytes]) -> list[Incoming]:
    return [Incoming(t, p) for t, p in pairs]


def test_topic_scheme_round_trips_and_refuses_strangers() -> None:
    name = topic("XFL", "gas", "G-1", "telemetry")
    assert name == "linli/XFL/gas/G-1/telemetry"
    assert str(parse_topic(name)) == name
    for bad in ("linli/XFL/gas/G-1", "other/XFL/gas/G-1/telemetry", "linli/XFL/toaster/G-1/event",
                "linli/XFL/gas/G-1/gossip", "linli//gas/G-1/event"):
        with pytest.raises(Rejected) as caught:
            parse_topic(bad)
        assert caught.value.reason == "bad_topic"


def test_payloads_are_validated_per_device_type() -> None:
    gas = parse_topic("linli/XFL/gas/G-1/telemetry")
    ok = parse_payload(gas, b'{"id": "m1", "ts": 1764000000, "metrics": {"gas_lel": 3.5}}')
    assert ok.msg_key == "m1"
    cases = {
        b"{not json": "bad_json",
        b"[1, 2]": "bad_json",
        b'{"ts": 1764000000, "metrics": {"smoke": 3}}': "schema",          # not a gas metric
        b'{"ts": 1764000000, "metrics": {"gas_lel": 300}}': "schema",       # out of range
        b'{"metrics": {"gas_lel": 3}}': "schema",                           # no timestamp
        b'{"ts": 1764000000, "metrics": {}}': "schema",                     # nothing measured
        b'{"ts": "2026-01-01T00:00:00", "metrics": {"gas_lel": 1}}': "schema",  # no time zone
        b"x" * (MAX_PAYLOAD_BYTES + 1): "oversized",
    }
    for raw, reason in cases.items():
        with pytest.raises(Rejected) as caught:
            parse_payload(gas, raw)
        assert caught.value.reason == reason, raw[:60]
    gate = parse_topic("linli/XFL/access_gate/A-1/event")
    with pytest.raises(Rejected, match="method and credential_ref"):
        parse_payload(gate, b'{"ts": 1764000000, "event": "access"}')
    with pytest.raises(Rejected, match="face_image"):  # no biometrics: unknown fields are refused
        parse_payload(gate, b'{"ts": 1764000000, "event": "access", "method": "face", '
                            b'"credential_ref": "F-1", "face_image": "AAAA"}')


def test_each_kind_of_bad_message_is_dead_lettered_with_its_reason(engine: Engine, session: Session) -> None:
    devices(session, ("G-1", "gas"))
    writer = BatchWriter(engine)
    batch = [
        Incoming("linli/XFL/gas/G-1/telemetry", b"\x00\xffgarbage"),
        Incoming("linli/XFL/gas/G-1/telemetry", b'{"ts": 1764000000, "metrics": {"gas_lel": -5}}'),
        Incoming("linli/XFL/gas/NOPE/telemetry", b'{"ts": 1764000000, "metrics": {"gas_lel": 5}}'),
        Incoming("linli/XFL/smoke/G-1/event", b'{"ts": 1764000000, "event": "smoke_alarm"}'),
        Incoming("linli/XFL/gas/G-1/telemetry", b"{" + b" " * (MAX_PAYLOAD_BYTES + 10) + b"}"),
        Incoming("somewhere/else", b"{}"),
        Incoming("linli/XFL/gas/G-1/telemetry", b'{"ts": 1764000000, "metrics": {"gas_lel": 5}}'),
    ]
    result = writer.write(batch)
    assert result.written == 1 and result.dead_letters == 6
    rows = session.execute(select(DeadLetter).order_by(DeadLetter.id)).scalars().all()
    assert [r.reason for r in rows] == ["bad_json", "schema", "unknown_device", "wrong_type", "oversized",
                                        "bad_topic"]
    assert rows[0].payload == b"\x00\xffgarbage"  # the raw bytes, as they came
    assert "gas_lel" in rows[1].detail and "NOPE" in rows[2].detail
    assert _count(session, Telemetry) == 1


def test_a_redelivered_batch_writes_nothing_twice(engine: Engine, session: Session) -> None:
    devices(session, ("G-1", "gas"), ("A-1", "access_gate"))
    writer = BatchWriter(engine)
    batch = _in(*[message("telemetry", "gas", "G-1", {"id": f"m{i}", "metrics": {"gas_lel": 1.0}}) for i in range(50)],
                message("event", "access_gate", "A-1", {"id": "a1", "event": "access", "method": "card",
                                                       "credential_ref": "C-42"}))
    first = writer.write(batch)
    again = writer.write(batch)  # what the broker does after a crash before the ack
    assert (first.written, first.duplicates, first.records) == (51, 0, 1)
    assert (again.written, again.duplicates, again.records) == (0, 51, 0)
    assert _count(session, Telemetry) == 50
    assert _count(session, AccessRecord) == 1 and _count(session, OutboxRecord) == 1
    # messages without an id are idempotent on their timestamp
    t, p = message("telemetry", "gas", "G-1", {"ts": 1764000000.25, "metrics": {"gas_lel": 2.0}})
    writer.write([Incoming(t, p), Incoming(t, p)])
    assert _count(session, Telemetry) == 51


def test_heartbeats_bring_a_device_online_with_battery_and_firmware(engine: Engine, session: Session) -> None:
    made = devices(session, ("S-1", "smoke"))
    assert made["S-1"].state == DeviceState.offline
    BatchWriter(engine).write(_in(message("heartbeat", "smoke", "S-1", {"battery": 17, "firmware": "2.0.1"})))
    session.expire_all()
    device = session.get(Device, made["S-1"].id)
    assert device is not None
    assert (device.state, device.battery, device.firmware) == (DeviceState.online, 17, "2.0.1")
    assert device.last_seen is not None


def test_access_and_vehicle_records_keep_method_and_reference_only(engine: Engine, session: Session) -> None:
    devices(session, ("A-1", "access_gate"), ("V-1", "vehicle_barrier"))
    BatchWriter(engine).write(_in(
        message("event", "access_gate", "A-1", {"event": "access", "method": "id_card",
                                                "credential_ref": "340104199001011234", "direction": "in"}),
        message("event", "vehicle_barrier", "V-1", {"event": "vehicle", "plate": "皖A12345", "direction": "out"})))
    access = session.execute(select(AccessRecord)).scalar_one()
    vehicle = session.execute(select(VehicleRecord)).scalar_one()
    assert (access.method, access.credential_ref) == ("id_card", "340104199001011234")
    assert (vehicle.plate, vehicle.direction) == ("皖A12345", "out")
    keys = sorted(r.idempotency_key for r in session.execute(select(OutboxRecord)).scalars())
    assert keys[0].startswith("access:A-1:") and keys[1].startswith("vehicle:V-1:")


def test_a_repeat_updates_the_open_alarm_then_ack_and_clear(engine: Engine, session: Session) -> None:
    devices(session, ("G-1", "gas"))
    writer = BatchWriter(engine)
    now = time.time()
    first = writer.write(_in(message("telemetry", "gas", "G-1", {"ts": now, "metrics": {"gas_lel": 25}})))
    assert [a.rule.alarm_type for a in first.new_alarms] == ["gas_leak"]
    assert first.new_alarms[0].rule.life_safety
    repeat = writer.write(_in(message("telemetry", "gas", "G-1", {"ts": now + 5, "metrics": {"gas_lel": 30}}),
                              message("event", "gas", "G-1", {"ts": now + 6, "event": "gas_alarm"})))
    # gas_leak again is the same alarm, counted; the fast rise (25 → 30 in 5 s) is a new one
    assert [a.rule.alarm_type for a in repeat.new_alarms] == ["gas_rising"]
    alarm = session.execute(select(Alarm).where(Alarm.alarm_type == "gas_leak")).scalar_one()
    assert (alarm.count, alarm.status, alarm.value) == (3, AlarmStatus.active, None)
    acknowledge(session, alarm.id, by="staff:3")
    session.commit()
    with pytest.raises(IllegalTransition):
        acknowledge(session, alarm.id, by="staff:3")
    clear(session, alarm.id, by="staff:4")
    session.commit()
    assert (alarm.status, alarm.acknowledged_by, alarm.cleared_by) == (AlarmStatus.cleared, "staff:3", "staff:4")
    assert alarm.acknowledged_at is not None and alarm.cleared_at is not None
    again = writer.write(_in(message("telemetry", "gas", "G-1", {"ts": now + 60, "metrics": {"gas_lel": 40}})))
    assert [a.rule.alarm_type for a in again.new_alarms] == ["gas_leak"]  # cleared: a new alarm opens


def test_duration_rule_fires_only_after_the_limit_is_held(engine: Engine, session: Session) -> None:
    devices(session, ("P-1", "fire_water_pressure"))
    writer = BatchWriter(engine)
    t0 = 1764000000.0
    fired = []
    for offset, pressure in ((0, 0.05), (30, 0.05), (40, 0.5), (50, 0.05), (90, 0.05), (111, 0.05)):
        result = writer.write(_in(message("telemetry", "fire_water_pressure", "P-1",
                                          {"ts": t0 + offset, "metrics": {"pressure_mpa": pressure}})))
        fired += [(offset, a.rule.alarm_type) for a in result.new_alarms if a.rule.kind == "duration"]
    assert fired == [(111, "low_water_pressure")]  # held from 50 s to 111 s (≥ 60 s); the dip at 40 s reset it


def test_a_throwing_camera_snapshot_goes_to_the_object_store(engine: Engine, session: Session,
                                                              tmp_path: Path) -> None:
    devices(session, ("T-1", "throwing_camera"))
    store = LocalObjectStore(tmp_path / "objects")
    image = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
    result = BatchWriter(engine, store=store).write(_in(message(
        "event", "throwing_camera", "T-1", {"id": "e1", "event": "object_thrown",
                                            "snapshot": base64.b64encode(image).decode()})))
    assert [a.rule.alarm_type for a in result.new_alarms] == ["object_thrown"]
    event = session.execute(select(DeviceEvent)).scalar_one()
    assert store.get(event.snapshot_key) == image
    alarm = session.execute(select(Alarm)).scalar_one()
    assert alarm.snapshot_key == event.snapshot_key
    assert "snapshot" not in json.dumps(event.data)
