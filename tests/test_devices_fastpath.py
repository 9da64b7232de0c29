"""The alarm fast path with a real S3 server: a throwing camera's snapshot in the notification and the case."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli.devices.fastpath import AlarmFastPath, open_alarm_case, responders
from linli.devices.health import sweep
from linli.devices.writer import BatchWriter, Incoming
from linli.events import RecordingBus
from linli.models import Alarm, AlarmStatus, Case, CaseEvent, CasePhoto, Device, Staff, utcnow
from linli.notify import RecordingNotifier
from linli.storage import MinioObjectStore
from tests.device_factories import devices, message
from tests.factories import CONFIG
from tests.s3server import S3Server, running_s3


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) for the module."""
    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


def test_a_thrown_object_is_notified_with_a_presigned_snapshot_and_filed_with_it(
        engine: Engine, session: Session, s3: S3Server) -> None:
    devices(session, ("T-1", "throwing_camera"))
    store = MinioObjectStore(endpoint=s3.endpoint, access_key=s3.access_key, secret_key=SecretStr(s3.secret_key),
                             bucket=f"linli-{uuid.uuid4().hex[:12]}", secure=False)
    image = b"\xff\xd8\xff\xe0" + b"balcony" * 50 + b"\xff\xd9"
    result = BatchWriter(engine, store=store).write([Incoming(*message(
        "event", "throwing_camera", "T-1", {"id": "e1", "event": "object_thrown",
                                            "snapshot": base64.b64encode(image).decode()}))])
    notifier, bus = RecordingNotifier(), RecordingBus()
    fast = AlarmFastPath(engine, notifier=notifier, global_urls=["json://127.0.0.1:9/x"], config=CONFIG, bus=bus,
                         store=store)
    outcome = [future.result(timeout=30) for future in fast.submit(result.new_alarms)]
    fast.close()
    assert outcome[0] is not None and outcome[0].case_id is not None
    body = notifier.sent[0].body
    found = re.search(r"http://\S+", body)
    assert found, body
    url = found.group(0)
    assert httpx.get(url, timeout=10).content == image  # the presigned URL serves the snapshot
    alarm = session.execute(select(Alarm)).scalar_one()
    photo = session.execute(select(CasePhoto).where(CasePhoto.case_id == alarm.case_id)).scalar_one()
    assert photo.key == alarm.snapshot_key and photo.size == len(image)
    assert bus.names() == ["linli.case.reported"]


def test_responders_are_the_grid_worker_and_security_on_duty(session: Session) -> None:
    made = devices(session, ("S-1", "smoke"))
    device = session.get(Device, made["S-1"].id)
    assert device is not None
    found = responders(session, device)
    teams = sorted({s.team for s in found})
    assert teams == ["community", "security"] and all(s.on_duty for s in found)
    for staff in found:  # nobody on duty: the team leads still hear of it
        staff.on_duty = False
        session.add(staff)
    session.commit()
    fallback = responders(session, device)
    assert fallback and all(s.role == "team_lead" for s in fallback)
    assert all(isinstance(s, Staff) for s in fallback)


def test_responders_are_kept_for_the_ttl_and_read_again_after_it(engine: Engine, session: Session) -> None:
    devices(session, ("S-1", "smoke"), ("S-2", "smoke"))
    writer = BatchWriter(engine)
    alarms = writer.write([Incoming(*message("event", "smoke", code, {"id": f"e-{code}", "event": "smoke_alarm"}))
                           for code in ("S-1", "S-2")]).new_alarms
    notifier, bus = RecordingNotifier(), RecordingBus()
    cached = AlarmFastPath(engine, notifier=notifier, global_urls=["json://127.0.0.1:9/x"], config=CONFIG, bus=bus,
                           recipients_ttl=3600)
    fresh = AlarmFastPath(engine, notifier=notifier, global_urls=["json://127.0.0.1:9/x"], config=CONFIG, bus=bus,
                          recipients_ttl=0)
    first = cached.notify(alarms[0].alarm_id)
    for staff in session.execute(select(Staff).where(Staff.on_duty == True)).scalars():  # noqa: E712
        staff.on_duty = False
        session.add(staff)
    session.commit()
    device = session.get(Device, session.execute(select(Alarm)).scalars().first().device_id)  # type: ignore[union-attr]
    assert device is not None
    expected = {s.id for s in responders(session, device)}  # nobody on duty now: the team leads
    with Session(engine) as check:
        assert {s_id for s_id, _ in cached._responders(check, device)} != expected  # within the TTL: kept
        assert {s_id for s_id, _ in fresh._responders(check, device)} == expected  # TTL 0: read again
    assert first and len(notifier.sent) == len(first)  # each responder got the alarm
    cached.close()
    fresh.close()


def _leak(engine: Engine, session: Session, code: str) -> list[object]:
    """A gas reading jumping from 2 to 42 %LEL: a gas leak (critical) and gas rising fast (major) at once."""
    writer = BatchWriter(engine)
    now = time.time()
    writer.write([Incoming(*message("telemetry", "gas", code, {"id": f"{code}-a", "ts": now - 30,
                                                              "metrics": {"gas_lel": 2.0}}))])
    return writer.write([Incoming(*message("telemetry", "gas", code, {"id": f"{code}-b", "ts": now,
                                                                     "metrics": {"gas_lel": 42.0}}))]).new_alarms


def test_alarms_of_one_device_from_one_reading_open_one_case_led_by_the_most_severe(
        engine: Engine, session: Session) -> None:
    devices(session, ("G-1", "gas"))
    new_alarms = _leak(engine, session, "G-1")
    assert sorted(a.rule.alarm_type for a in new_alarms) == ["gas_leak", "gas_rising"]
    notifier, bus = RecordingNotifier(), RecordingBus()
    fast = AlarmFastPath(engine, notifier=notifier, global_urls=[], config=CONFIG, bus=bus)
    for future in fast.submit(new_alarms):
        future.result(timeout=30)
    fast.close()
    session.expire_all()
    alarms = {a.alarm_type: a for a in session.execute(select(Alarm)).scalars()}
    assert alarms["gas_leak"].case_id is not None
    assert alarms["gas_rising"].case_id == alarms["gas_leak"].case_id  # one incident, one case
    case = session.get(Case, alarms["gas_leak"].case_id)
    assert case is not None and "燃气泄漏" in case.description  # filed for the leak, not for the rise
    joined = session.execute(select(CaseEvent).where(CaseEvent.case_id == case.id,
                                                     CaseEvent.action == "alarm_joined")).scalars().all()
    assert len(joined) == 1 and "燃气浓度快速上升" in joined[0].reason
    assert bus.names() == ["linli.case.reported"]
    assert session.execute(select(func.count()).select_from(Case)).scalar_one() == 1


def test_an_alarm_opens_its_own_case_beside_a_maintenance_case_and_after_a_cleared_one(
        engine: Engine, session: Session) -> None:
    devices(session, ("G-1", "gas"))
    writer = BatchWriter(engine)
    writer.write([Incoming(*message("heartbeat", "gas", "G-1", {"id": "hb", "battery": 5}))])
    report = sweep(session, now=utcnow())  # the device-health flow's sweep: battery 5% → low_battery
    session.commit()
    ((low_id, low_category),) = report.new_alarms
    (maintenance_case, _events) = open_alarm_case(engine, low_id, low_category, config=CONFIG)
    leak = [a for a in _leak(engine, session, "G-1") if a.rule.alarm_type == "gas_leak"]
    (leak_case, _events) = open_alarm_case(engine, leak[0].alarm_id, leak[0].rule.category, config=CONFIG)
    assert maintenance_case is not None and leak_case is not None and leak_case != maintenance_case
    # The leak's alarm cleared: a later alarm of the device is a new incident with a case of its own.
    session.expire_all()
    cleared = session.get(Alarm, leak[0].alarm_id)
    assert cleared is not None
    cleared.status = AlarmStatus.cleared
    session.add(cleared)
    session.commit()
    rising = session.execute(select(Alarm).where(Alarm.alarm_type == "gas_rising")).scalar_one()
    (rising_case, _events) = open_alarm_case(engine, rising.id, "fire_hazard", config=CONFIG)
    assert rising_case not in (None, leak_case, maintenance_case)
