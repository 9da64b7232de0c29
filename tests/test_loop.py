"""The closed loop's steps on a real database: report → assess → dispatch → handle → evaluate, SLA watch."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PIL import Image
from sqlmodel import Session, col, select

from linli.errors import IllegalTransition, ValidationError
from linli.loop.assess import assess, receive
from linli.loop.dispatch import dispatch
from linli.loop.evaluate import evaluate, rate
from linli.loop.handle import accept, resolve
from linli.loop.intake import ReportIn, file_report, parse_report
from linli.loop.sla import sweep
from linli.models import Assignment, Case, CaseEvent, CasePhoto, CaseStatus, Notification, Staff, utcnow
from linli.storage import LocalObjectStore
from tests.factories import CONFIG, a_case, a_resident, seeded


def _through_dispatch(session: Session, case: Case) -> Case:
    for step in (receive, assess, dispatch):
        step(session, case.id, config=CONFIG)
        session.commit()
    session.refresh(case)
    return case


def _timeline(session: Session, case_id: int) -> list[tuple[str, str | None]]:
    rows = session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(col(CaseEvent.id))).all()
    return [(r.action, r.to_status) for r in rows]


def test_a_report_walks_the_whole_loop_to_closed(session: Session) -> None:
    seeded(session)
    case = a_case(session)
    case = _through_dispatch(session, case)
    assert case.status == CaseStatus.dispatched and case.assignee_id is not None
    assignee = session.get(Staff, case.assignee_id)
    assert assignee is not None and assignee.team == "property" and assignee.on_duty
    assert case.due_at is not None and case.warn_at is not None and case.warn_at < case.due_at
    accept(session, case.number, staff_id=case.assignee_id)
    resolve(session, case.number, staff_id=case.assignee_id, note="换了灯泡")
    session.commit()
    requested = evaluate(session, case.id, config=CONFIG)
    session.commit()
    assert requested.detail == "rating requested" and requested.notifications
    rated = rate(session, case.number, resident_id=case.reporter_id, rating=5, comment="很快")
    session.commit()
    assert [e.name for e in rated.events] == ["linli.case.rated"]
    closed = evaluate(session, case.id, config=CONFIG)
    session.commit()
    assert closed.status == CaseStatus.closed
    assert [s for a, s in _timeline(session, case.id) if a == "transition"] == [
        CaseStatus.assessing, CaseStatus.dispatched, CaseStatus.in_progress, CaseStatus.resolved, CaseStatus.closed]
    kinds = session.exec(select(Notification.kind).where(Notification.case_id == case.id)
                         .order_by(col(Notification.id))).all()
    assert kinds == ["receipt", "assignment", "rating_request", "closed"]


def test_a_bad_rating_reopens_the_case_to_the_same_handler_with_the_comment(session: Session) -> None:
    seeded(session)
    case = _through_dispatch(session, a_case(session))
    handler = case.assignee_id
    accept(session, case.id, staff_id=handler)
    resolve(session, case.id, staff_id=handler)
    evaluate(session, case.id, config=CONFIG)
    rate(session, case.id, resident_id=case.reporter_id, rating=1, comment="灯还是不亮")
    session.commit()
    result = evaluate(session, case.id, config=CONFIG)
    session.commit()
    assert result.status == CaseStatus.reopened and [e.name for e in result.events] == ["linli.case.reopened"]
    again = dispatch(session, case.id, config=CONFIG)
    session.commit()
    assert again.status == CaseStatus.dispatched
    session.refresh(case)
    assert case.assignee_id == handler
    notice = session.exec(select(Notification).where(Notification.case_id == case.id,
                                                     Notification.kind == "reopened")).one()
    assert "灯还是不亮" in notice.body and notice.target == f"staff:{handler}"


def test_dispatch_goes_round_robin_skips_off_duty_and_respects_the_cap(session: Session) -> None:
    seeded(session)
    team = session.exec(select(Staff).where(Staff.team == "property", Staff.community_id == 1,
                                            Staff.role != "team_lead").order_by(col(Staff.id))).all()
    assert len(team) == 2
    first = _through_dispatch(session, a_case(session)).assignee_id
    second = _through_dispatch(session, a_case(session)).assignee_id
    assert {first, second} == {s.id for s in team}
    team[0].on_duty = False
    team[1].max_open = 1  # already holds one case: full
    session.add_all(team)
    session.commit()
    third = _through_dispatch(session, a_case(session))
    lead = session.get(Staff, third.assignee_id)
    assert lead is not None and lead.role == "team_lead"


def test_dispatch_waits_when_nobody_is_on_duty(session: Session) -> None:
    seeded(session)
    for staff in session.exec(select(Staff).where(Staff.team == "property")).all():
        staff.on_duty = False
        session.add(staff)
    session.commit()
    case = _through_dispatch(session, a_case(session))
    assert case.status == CaseStatus.assessing and case.assignee_id is None
    assert ("waiting", None) in _timeline(session, case.id)


def test_only_the_reporter_may_rate_and_only_once(session: Session) -> None:
    seeded(session)
    case = _through_dispatch(session, a_case(session))
    with pytest.raises(ValidationError, match="only a resolved case"):
        rate(session, case.id, resident_id=case.reporter_id, rating=4)
    accept(session, case.id, staff_id=case.assignee_id)
    resolve(session, case.id, staff_id=case.assignee_id)
    session.commit()
    other = a_resident(session, "XFL-B2")
    with pytest.raises(ValidationError, match="only the reporter"):
        rate(session, case.id, resident_id=other.id, rating=5)
    with pytest.raises(ValidationError, match="from 1 to 5"):
        rate(session, case.id, resident_id=case.reporter_id, rating=6)
    rate(session, case.id, resident_id=case.reporter_id, rating=4)
    with pytest.raises(ValidationError, match="already been rated"):
        rate(session, case.id, resident_id=case.reporter_id, rating=4)


def test_only_the_assignee_may_accept(session: Session) -> None:
    seeded(session)
    case = _through_dispatch(session, a_case(session))
    with pytest.raises(ValidationError, match="not assigned to"):
        accept(session, case.id, staff_id=case.assignee_id + 1)
    with pytest.raises(IllegalTransition):
        resolve(session, case.id, staff_id=case.assignee_id)  # must accept first


@pytest.mark.parametrize(("fields", "message"), [
    ({"description": "   "}, "description"),
    ({"description": "x", "lat": 95, "lon": 117}, "lat"),
    ({"description": "x", "lat": 31.7}, "both lat and lon"),
    ({"description": "x", "lat": 31.7, "lon": 200}, "lon"),
    ({"description": "x", "unknown": 1}, "unknown"),
])
def test_bad_report_fields_are_named(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_report(fields)


def _count(session: Session, model: type) -> int:
    return len(session.exec(select(model)).all())


def test_unknown_category_lists_the_valid_ones_and_writes_nothing(session: Session) -> None:
    seeded(session)
    with pytest.raises(ValidationError) as err:
        file_report(session, ReportIn(description="路灯坏了", category="nonsense", building="XFL-B1"), config=CONFIG)
    session.rollback()
    assert "unknown category 'nonsense'" in str(err.value) and "facility_repair" in err.value.hint
    assert _count(session, Case) == 0 and _count(session, CaseEvent) == 0


def test_category_is_suggested_from_keywords(session: Session) -> None:
    seeded(session)
    result = file_report(session, ReportIn(description="消防通道被堵塞了", building="XFL-B1"), config=CONFIG)
    assert result.detail == "fire_hazard"


def test_a_photo_that_is_not_an_image_is_refused_and_nothing_is_written(session: Session, tmp_path) -> None:
    seeded(session)
    store = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(ValidationError) as err:
        file_report(session, ReportIn(description="路灯坏了", category="facility_repair", building="XFL-B1"),
                    config=CONFIG, store=store, photo=b"this is not a picture")
    session.rollback()
    assert err.value.field == "photo"
    assert _count(session, Case) == 0 and not any((tmp_path / "objects").rglob("*.*"))


def test_a_photo_is_stored_with_the_case(session: Session, tmp_path) -> None:
    import io

    seeded(session)
    store = LocalObjectStore(tmp_path / "objects")
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buffer, "JPEG")
    result = file_report(session, ReportIn(description="秋千坏了", category="facility_repair", building="XFL-B1"),
                         config=CONFIG, store=store, photo=buffer.getvalue())
    session.commit()
    photo = session.exec(select(CasePhoto).where(CasePhoto.case_id == result.case_id)).one()
    assert photo.kind == "before" and store.exists(photo.key)


def test_coordinates_locate_the_nearest_building(session: Session) -> None:
    seeded(session)
    from linli.models import Building

    b3 = session.exec(select(Building).where(Building.code == "HPY-B3")).one()
    result = file_report(session, ReportIn(description="垃圾没人清", lat=b3.lat, lon=b3.lon), config=CONFIG)
    case = session.get(Case, result.case_id)
    assert case is not None and case.building_id == b3.id and case.grid_id == b3.grid_id


def test_sla_watch_warns_then_escalates_a_level_and_notifies(session: Session) -> None:
    seeded(session)
    case = _through_dispatch(session, a_case(session))
    now = utcnow()
    first = sweep(session, now=case.warn_at + timedelta(minutes=1), config=CONFIG)
    session.commit()
    assert first.warned == [case.number] and not first.escalated
    breach = sweep(session, now=case.due_at + timedelta(minutes=1), config=CONFIG)
    session.commit()
    session.refresh(case)
    assert breach.escalated == [case.number] and case.escalation_level == 1 and case.due_at > now
    targets = set(session.exec(select(Notification.target).where(Notification.kind == "escalation")).all())
    street = session.exec(select(Staff).where(Staff.level == 1)).one()
    assert f"staff:{street.id}" in targets and len(targets) == 2  # the team lead and the street officer
    again = sweep(session, now=case.due_at - timedelta(hours=100), config=CONFIG)
    assert not again.escalated  # the next level has its own deadline


def test_sla_watch_auto_closes_unrated_cases_and_restarts_stuck_ones(session: Session) -> None:
    seeded(session)
    case = _through_dispatch(session, a_case(session))
    accept(session, case.id, staff_id=case.assignee_id)
    resolve(session, case.id, staff_id=case.assignee_id)
    session.commit()
    stuck = a_case(session)  # reported, and no flow took it
    later = utcnow() + timedelta(days=CONFIG.auto_close_days, minutes=5)
    out = sweep(session, now=later, config=CONFIG)
    session.commit()
    session.refresh(case)
    assert out.auto_closed == [case.number] and case.status == CaseStatus.closed
    assert stuck.number in out.restarted
    assert ("linli.case.restart.report", stuck.id) in [(e.name, e.case_id) for e in out.events]


def test_assignments_are_recorded(session: Session) -> None:
    seeded(session)
    case = _through_dispatch(session, a_case(session))
    row = session.exec(select(Assignment).where(Assignment.case_id == case.id)).one()
    assert row.active and row.staff_id == case.assignee_id
