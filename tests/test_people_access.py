"""Access credentials with fallback and the elderly-care watch, on records written by the devices' real ingest
writer: face failures → fallback notice, unused faces voided, silence → welfare check, activity → none."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import LargeBinary, inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from flows.dag_runner import run_dag
from linli.access import enrol, face_failures, void_unused_faces
from linli.care import find_silent, open_welfare_checks
from linli.devices.writer import BatchWriter, Incoming
from linli.errors import ValidationError
from linli.models import Assignment, Case, CaseStatus, Grid, Notification, Resident, Staff, utcnow
from linli.models.registry import AccessCredential, CredentialStatus, FamilyContact, ResidentDetail, WelfareCheck
from linli.receiver import NotificationReceiver
from linli.settings import Settings, get_settings
from tests.device_factories import devices, message
from tests.factories import CONFIG

ACCESS_TABLES = {"access_record", "access_credential", "access_notice"}


def gate_events(engine: Engine, code: str, *events: tuple[str, bool, datetime]) -> None:
    """Access attempts (method, reference, granted, time) written through the devices' ingest writer."""
    writer = BatchWriter(engine)
    batch = [Incoming(*message("event", "access_gate", code, {
        "id": uuid.uuid4().hex, "event": "access", "method": method, "credential_ref": ref, "granted": granted,
        "ts": at.timestamp()})) for (method, ref), granted, at in (
            ((e[0].split(":", 1)), e[1], e[2]) for e in events)]
    assert writer.write(batch).written == len(batch)


def door_event(engine: Engine, code: str, event: str, at: datetime) -> None:
    """A door-magnet event written through the ingest writer."""
    writer = BatchWriter(engine)
    assert writer.write([Incoming(*message("event", "door_magnet", code, {
        "id": uuid.uuid4().hex, "event": event, "ts": at.timestamp()}))]).written == 1


def resident_in_b1(session: Session) -> Resident:
    resident = session.exec(select(Resident).where(Resident.building_id == 1).order_by(Resident.id)).first()
    assert resident is not None
    return resident


# --- the schema --------------------------------------------------------------------------------


def test_no_column_can_hold_image_bytes_for_access(engine: Engine) -> None:
    inspector = inspect(engine)
    for table in ACCESS_TABLES:
        for column in inspector.get_columns(table):
            kind = str(column["type"]).upper()
            assert not any(word in kind for word in ("BLOB", "BYTEA", "BINARY")), (table, column["name"], kind)
            assert not any(word in column["name"] for word in ("image", "photo", "face_", "template", "feature",
                                                               "snapshot", "biometric")), (table, column["name"])
            if "CHAR" in kind or "TEXT" in kind:
                length = column["type"].length  # type: ignore[attr-defined]
                assert length is not None and length <= 200, (table, column["name"], length)  # too short for images
    # Anywhere in the schema, raw bytes are held only by the dead-letter queue (malformed device messages).
    binary = {(t.name, c.name) for t in SQLModel.metadata.sorted_tables for c in t.columns
              if isinstance(c.type, LargeBinary)}
    assert binary <= {("dead_letter", "payload")}


# --- access credentials ------------------------------------------------------------------------


def test_a_resident_holds_several_methods_and_references_are_checked(engine: Engine, session: Session) -> None:
    devices(session, ("GATE-1", "access_gate"))
    resident = resident_in_b1(session)
    for method, ref in (("face", "F-1001"), ("card", "C-88"), ("app", "U-1")):
        enrol(session, resident.id, method, ref)  # type: ignore[arg-type]
    session.commit()
    assert {c.method for c in session.exec(select(AccessCredential)).all()} == {"face", "card", "app"}
    with pytest.raises(ValidationError, match="unknown access method"):
        enrol(session, resident.id, "retina", "R-1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="1–64"):
        enrol(session, resident.id, "face", "A" * 5000)  # type: ignore[arg-type]  # e.g. a base64 image
    other = session.exec(select(Resident).where(Resident.id != resident.id)).first()
    with pytest.raises(ValidationError, match="another resident"):
        enrol(session, other.id, "card", "C-88")  # type: ignore[union-attr, arg-type]


def test_repeated_face_failures_bring_a_fallback_notice_to_resident_and_desk(engine: Engine, session: Session,
                                                                            settings: Settings) -> None:
    devices(session, ("GATE-1", "access_gate"))
    resident = resident_in_b1(session)
    enrol(session, resident.id, "face", "F-1001")  # type: ignore[arg-type]
    enrol(session, resident.id, "card", "C-88")  # type: ignore[arg-type]
    session.commit()
    now = utcnow()
    gate_events(engine, "GATE-1", ("face:F-1001", False, now - timedelta(minutes=3)),
                ("face:F-1001", False, now - timedelta(minutes=2)))
    kwargs = {"minutes": 5, "threshold": 3, "language": "zh", "templates_dir": settings.templates_dir}
    assert face_failures(session, now=now, **kwargs).residents == []  # two failures: not yet
    gate_events(engine, "GATE-1", ("face:F-1001", False, now - timedelta(minutes=1)))
    outcome = face_failures(session, now=now, **kwargs)
    session.commit()
    assert outcome.residents == [resident.id]
    notes = [session.get(Notification, i) for i in outcome.notifications]
    targets = [n.target for n in notes if n]
    assert targets[0] == f"resident:{resident.id}" and targets[1].startswith("staff:")
    desk = session.get(Staff, int(targets[1].split(":")[1]))
    assert desk is not None and desk.team == "property"
    body = notes[0].body  # type: ignore[union-attr]
    assert "门禁卡" in body and "二维码" in body and "身份证" in body and "重新录入" in body
    assert resident.name not in notes[1].body  # the desk sees the name masked  # type: ignore[union-attr]
    # More failures within the hour: no second notice.
    gate_events(engine, "GATE-1", *[("face:F-1001", False, now) for _ in range(3)])
    assert face_failures(session, now=now + timedelta(seconds=30), **kwargs).residents == []


def test_failures_spread_out_or_at_different_gates_bring_no_notice(engine: Engine, session: Session,
                                                                   settings: Settings) -> None:
    devices(session, ("GATE-1", "access_gate"), ("GATE-2", "access_gate"))
    resident = resident_in_b1(session)
    enrol(session, resident.id, "face", "F-1001")  # type: ignore[arg-type]
    session.commit()
    now = utcnow()
    gate_events(engine, "GATE-1", ("face:F-1001", False, now - timedelta(minutes=30)),
                ("face:F-1001", False, now - timedelta(minutes=1)))
    gate_events(engine, "GATE-2", ("face:F-1001", False, now - timedelta(minutes=2)),
                ("face:F-1001", True, now - timedelta(minutes=1)))
    assert face_failures(session, now=now, minutes=5, threshold=3, language="zh",
                         templates_dir=settings.templates_dir).residents == []


def test_face_credentials_unused_for_n_days_are_voided_and_the_resident_told(engine: Engine, session: Session,
                                                                             settings: Settings) -> None:
    devices(session, ("GATE-1", "access_gate"))
    residents = session.exec(select(Resident).order_by(Resident.id)).all()[:3]
    now = utcnow()
    old = now - timedelta(days=40)
    for r, ref in zip(residents, ("F-1", "F-2", "F-3"), strict=True):
        cred = enrol(session, r.id, "face", ref)  # type: ignore[arg-type]
        cred.enrolled_at = old
    enrol(session, residents[0].id, "card", "C-1")  # type: ignore[arg-type]
    session.commit()
    gate_events(engine, "GATE-1", ("face:F-2", True, now - timedelta(days=3)),  # used recently: kept
                ("face:F-3", True, now - timedelta(days=20)))  # used, but 20 days ago: voided
    outcome = void_unused_faces(session, now=now, days=15, language="zh", templates_dir=settings.templates_dir)
    session.commit()
    assert sorted(outcome.residents) == [residents[0].id, residents[2].id]
    status = {c.reference: c.status for c in session.exec(select(AccessCredential)).all()}
    assert status == {"F-1": CredentialStatus.void, "F-2": CredentialStatus.active, "F-3": CredentialStatus.void,
                      "C-1": CredentialStatus.active}  # other methods are untouched
    note = session.get(Notification, outcome.notifications[0])
    assert note is not None and "15 天" in note.body and "重新录入" in note.body
    assert void_unused_faces(session, now=now, days=15, language="zh",
                             templates_dir=settings.templates_dir).residents == []


# --- elderly-care watch ------------------------------------------------------------------------


def watched(session: Session, *, hours: int = 24) -> tuple[Resident, int]:
    """A resident of XFL-B1 living alone, their door magnet, a family contact; returns (resident, door id)."""
    made = devices(session, ("DOOR-101", "door_magnet"), ("GATE-1", "access_gate"))
    resident = resident_in_b1(session)
    detail = ResidentDetail(resident_id=resident.id, living_alone=True, watch_hours=hours,  # type: ignore[arg-type]
                            door_device_id=made["DOOR-101"].id, updated_at=utcnow() - timedelta(days=10))
    session.add(detail)
    session.add(FamilyContact(resident_id=resident.id, name="张小明", relation="儿子",  # type: ignore[arg-type]
                              contact_url="json://127.0.0.1:9/family"))
    enrol(session, resident.id, "card", "C-7")  # type: ignore[arg-type]
    session.commit()
    return resident, made["DOOR-101"].id  # type: ignore[return-value]


def test_silence_raises_a_welfare_check_for_the_grid_worker_and_tells_the_family(engine: Engine, session: Session
                                                                                ) -> None:
    resident, _door = watched(session)
    now = utcnow()
    door_event(engine, "DOOR-101", "opened", now - timedelta(hours=30))
    silent = find_silent(session, now=now, default_hours=24)
    assert [(s.resident_id, s.hours) for s in silent] == [(resident.id, 24)]
    assert abs((silent[0].last_activity_at - (now - timedelta(hours=30))).total_seconds()) < 2
    outcome = open_welfare_checks(session, silent, config=CONFIG, now=now)
    session.commit()
    [number] = outcome.cases
    case = session.exec(select(Case).where(Case.number == number)).one()
    grid = session.exec(select(Grid).where(Grid.code == "XFL-G1")).one()
    assert case.source == "care_watch" and case.status == CaseStatus.dispatched
    assert case.assignee_id == grid.grid_worker_id and case.due_at is not None
    assert session.exec(select(Assignment).where(Assignment.case_id == case.id)).one().staff_id == grid.grid_worker_id
    [worker_note] = [session.get(Notification, i) for i in outcome.voice]
    [family_note] = [session.get(Notification, i) for i in outcome.notifications]
    assert worker_note.target == f"staff:{grid.grid_worker_id}" and "30" not in worker_note.title  # type: ignore[union-attr]
    assert "24 小时" in worker_note.body and resident.name not in worker_note.body  # type: ignore[union-attr]
    assert family_note.target.startswith("family:") and "探访" in family_note.body  # type: ignore[union-attr]
    # The check is open: the next run raises nothing more for the same silence.
    assert find_silent(session, now=now + timedelta(hours=1), default_hours=24) == []


def test_activity_means_no_welfare_check(engine: Engine, session: Session) -> None:
    resident, _door = watched(session)
    now = utcnow()
    door_event(engine, "DOOR-101", "opened", now - timedelta(hours=30))
    assert find_silent(session, now=now, default_hours=24)  # silent so far …
    gate_events(engine, "GATE-1", ("card:C-7", True, now - timedelta(hours=2)))  # … then a card at the gate
    assert find_silent(session, now=now, default_hours=24) == []
    door_event(engine, "DOOR-101", "closed", now - timedelta(minutes=5))
    assert find_silent(session, now=now + timedelta(hours=23), default_hours=24) == []
    assert find_silent(session, now=now + timedelta(hours=25), default_hours=24)  # per-resident hours count
    assert session.exec(select(WelfareCheck)).all() == []


def test_a_resident_not_living_alone_is_not_watched(engine: Engine, session: Session) -> None:
    resident, _door = watched(session)
    detail = session.get(ResidentDetail, resident.id)
    detail.living_alone = False  # type: ignore[union-attr]
    session.add(detail)
    session.commit()
    assert find_silent(session, now=utcnow() + timedelta(days=5), default_hours=24) == []


# --- the DAGs in Prefect's test harness ---------------------------------------------------------


@pytest.fixture
def receiver(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotificationReceiver]:
    """A real HTTP receiver; the voice channel is a second path on it."""
    with NotificationReceiver() as rx:
        monkeypatch.setenv("LINLI_NOTIFY__URLS", rx.apprise_url("all"))
        monkeypatch.setenv("LINLI_PEOPLE__VOICE_URLS", rx.apprise_url("voice"))
        get_settings.cache_clear()
        yield rx
    get_settings.cache_clear()


def test_the_care_watch_dag_raises_the_case_and_rings_the_grid_worker(
    prefect_server: None, receiver: NotificationReceiver, engine: Engine, session: Session
) -> None:
    watched(session, hours=6)
    door_event(engine, "DOOR-101", "opened", utcnow() - timedelta(hours=7))
    steps = asyncio.run(run_dag(dag="care-watch"))
    assert steps == {"silent": "completed", "welfare_checks": "completed"}
    voice = receiver.wait_for(lambda m: m["path"] == "/voice", timeout=20)
    assert "居家养老" in voice[0]["json"]["title"]
    assert len(session.exec(select(WelfareCheck)).all()) == 1
    # Nothing new on the next run: the check is open.
    assert asyncio.run(run_dag(dag="care-watch"))["welfare_checks"] == "skipped"


def test_the_access_fallback_dag_notices_the_haircut_case(
    prefect_server: None, receiver: NotificationReceiver, engine: Engine, session: Session
) -> None:
    devices(session, ("GATE-1", "access_gate"))
    resident = resident_in_b1(session)
    enrol(session, resident.id, "face", "F-1001")  # type: ignore[arg-type]
    session.commit()
    now = datetime.now(UTC)
    gate_events(engine, "GATE-1", *[("face:F-1001", False, now - timedelta(seconds=30 * i)) for i in range(3)])
    assert asyncio.run(run_dag(dag="access-fallback")) == {"face_failures": "completed"}
    messages = receiver.wait_for(lambda m: "刷脸" in m["json"]["title"], count=2, timeout=20)
    assert len(messages) == 2  # the resident and the property desk


# --- patrol check-ins from devices, announcements on the loudspeakers ------------------------------


def test_a_checkpoint_devices_checkin_counts_as_a_scan(engine: Engine, session: Session, settings: Settings) -> None:
    from linli.patrol import CheckpointIn, create_route, rounds_on

    devices(session, ("CP-GATE", "patrol_checkpoint"), ("CP-PUMP", "patrol_checkpoint"))
    create_route(session, code="R1", name="夜巡", community="XFL", lead_staff_id=None,
                 checkpoints=[CheckpointIn("CP-GATE", "东门", "00:00", "23:59", 0),
                              CheckpointIn("CP-PUMP", "水泵房", "00:00", "23:59", 0)])
    session.commit()
    now = utcnow()
    writer = BatchWriter(engine)
    assert writer.write([Incoming(*message("event", "patrol_checkpoint", "CP-GATE", {
        "id": uuid.uuid4().hex, "event": "checkin", "ts": (now - timedelta(seconds=5)).timestamp()}))]).written == 1
    status = {r.code: r.status for r in rounds_on(session, now=now, tz=settings.timezone)}
    assert status == {"CP-GATE": "ok", "CP-PUMP": "pending"}


def test_an_announcement_is_read_out_on_the_loudspeakers(engine: Engine, session: Session, settings: Settings,
                                                         tmp_path: Path) -> None:
    import json
    import time

    from linli.announce import broadcast, publish
    from linli.auth import CurrentUser
    from linli.devices.commands import MqttPublisher
    from linli.devices.simulator import publisher
    from linli.models.registry import Role
    from tests.mqtt_broker import mosquitto_path, run_broker

    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    devices(session, ("L-1", "loudspeaker"))
    manager = CurrentUser(id=0, username="mgr", role=Role.manager, staff_id=None)
    published = publish(session, manager, title="防汛通知", body="今晚有暴雨，请收好阳台物品。", community="XFL",
                        language="zh", templates_dir=settings.templates_dir)
    session.commit()
    with run_broker(tmp_path) as broker:
        heard: list[bytes] = []
        listener = publisher(broker.host, broker.port)
        listener.on_message = lambda _c, _u, msg: heard.append(msg.payload)
        listener.subscribe("linli/XFL/loudspeaker/L-1/cmd", qos=1)
        time.sleep(0.3)
        with MqttPublisher(broker.host, broker.port) as send:
            sent = broadcast(session, send, published.announcement_id, requested_by=manager.actor)
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            time.sleep(0.05)
        listener.disconnect()
        listener.loop_stop()
    assert len(sent) == 1
    assert json.loads(heard[0])["args"]["text"].startswith("防汛通知")


def test_retention_deletes_old_access_records_and_keeps_recent_ones(engine: Engine, session: Session) -> None:
    from linli.models import AccessRecord
    from linli.retention import RetentionPolicy, purge

    devices(session, ("GATE-1", "access_gate"))
    now = utcnow()
    gate_events(engine, "GATE-1", ("card:C-1", True, now - timedelta(days=200)), ("card:C-1", True, now))
    counts = purge(session, now=now, policy=RetentionPolicy(access_days=180))
    session.commit()
    assert counts["access_record"] == 1
    assert [r.ts > now - timedelta(days=1) for r in session.exec(select(AccessRecord)).all()] == [True]
