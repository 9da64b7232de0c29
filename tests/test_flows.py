"""The loop's DAGs through the generic runner in Prefect's test harness, notifications delivered to a
real HTTP receiver."""

from __future__ import annotations

import asyncio

from sqlmodel import Session, col, select

from flows.dag_runner import run_dag
from flows.deployments import dag_deployments
from linli.dag.registry import load_task_modules
from linli.dag.validate import load_folder
from linli.loop.evaluate import rate
from linli.loop.handle import accept, resolve
from linli.models import Case, CaseEvent, CaseStatus, Notification, NotificationStatus, Staff
from linli.receiver import NotificationReceiver
from linli.settings import Settings, get_settings
from tests.factories import a_case, seeded


def _run(dag: str, case_id: int | None = None, event: str = "") -> dict[str, str]:
    """Run a loop DAG as its deployment's trigger would: the case event in `trigger`."""
    trigger = {"event": event or f"linli.{dag}", "payload": {"case_id": case_id}} if case_id else {}
    return asyncio.run(run_dag(dag=dag, trigger=trigger))


def test_a_report_becomes_a_closed_case_with_its_timeline_and_notifications_delivered(
    prefect_server: None, receiver: NotificationReceiver, session: Session
) -> None:
    seeded(session)
    case = a_case(session, text="2栋门口的路灯坏了，晚上很黑")
    steps = _run("report", case.id, "linli.case.reported")  # receive, assess and dispatch in one run
    assert steps == {name: "completed" for name in ("receive", "publish_receipt", "assess", "publish_assessment",
                                                   "dispatch", "publish_dispatch")}
    session.refresh(case)
    assert case.status == CaseStatus.dispatched and case.due_at is not None
    assignee = session.get(Staff, case.assignee_id)
    assert assignee is not None
    assignment = receiver.wait_for(lambda m: "派单" in str(m["json"]) or case.number in str(m["json"]), count=2)
    assert any(assignee.name in str(m["json"]["message"]) for m in assignment)
    accept(session, case.id, staff_id=case.assignee_id)
    resolve(session, case.id, staff_id=case.assignee_id, note="已更换灯泡")
    session.commit()
    assert _run("evaluate", case.id, "linli.case.resolved")["evaluate"] == "completed"
    assert [n.kind for n in session.exec(select(Notification).where(Notification.case_id == case.id)).all()
            ][-1] == "rating_request"
    rate(session, case.id, resident_id=case.reporter_id, rating=5, comment="谢谢")
    session.commit()
    _run("evaluate", case.id, "linli.case.rated")
    session.expire_all()
    assert session.get(Case, case.id).status == CaseStatus.closed  # type: ignore[union-attr]
    moves = session.exec(select(CaseEvent.to_status).where(CaseEvent.case_id == case.id,
                                                           CaseEvent.action == "transition")
                         .order_by(col(CaseEvent.id))).all()
    assert moves == ["assessing", "dispatched", "in_progress", "resolved", "closed"]
    rows = session.exec(select(Notification).where(Notification.case_id == case.id)
                        .order_by(col(Notification.id))).all()
    assert [(n.kind, n.status) for n in rows] == [
        ("receipt", NotificationStatus.sent), ("assignment", NotificationStatus.sent),
        ("rating_request", NotificationStatus.sent), ("closed", NotificationStatus.sent)]
    arrived = receiver.wait_for(lambda m: case.number in str(m["json"]), count=4)
    titles = [m["json"]["title"] for m in arrived]
    assignment_row, rating_row = rows[1], rows[2]
    assert assignment_row.title in titles and rating_row.title in titles
    assert any(rating_row.body.splitlines()[0] in m["json"]["message"] for m in arrived)


def test_the_sla_watch_flow_escalates_an_overdue_case(prefect_server: None, settings: Settings,
                                                      session: Session) -> None:
    from datetime import timedelta

    from linli.models import utcnow

    seeded(session)
    case = a_case(session)
    _run("report", case.id)
    session.refresh(case)
    case.due_at = utcnow() - timedelta(minutes=1)
    session.add(case)
    session.commit()
    assert _run("sla-watch") == {"sweep": "completed", "publish": "completed"}
    session.refresh(case)
    assert case.escalation_level == 1
    escalations = session.exec(select(Notification).where(Notification.kind == "escalation")).all()
    assert escalations and all(n.status == NotificationStatus.recorded for n in escalations)  # no URL configured


def test_each_stage_is_a_deployment_of_its_dag_started_by_the_previous_stages_event() -> None:
    settings = get_settings()
    definitions = load_folder(settings.dag.definitions_dir, registry=load_task_modules(settings.dag.task_modules))
    deployments = {d.name: d for d in dag_deployments(definitions)}
    assert {"report", "assess", "dispatch", "evaluate", "sla-watch"} <= set(deployments)
    expected = {"report": {"linli.case.reported", "linli.case.restart.report"},
                "assess": {"linli.case.restart.assess"},
                "dispatch": {"linli.case.reopened", "linli.case.restart.dispatch"},
                "evaluate": {"linli.case.resolved", "linli.case.rated", "linli.case.restart.evaluate"}}
    for name, events in expected.items():
        (trigger,) = deployments[name].triggers
        assert trigger.expect == events
        assert trigger.parameters["trigger"]["payload"] == "{{ event.payload }}"
        assert trigger.parameters["trigger"]["event"]["template"] == "{{ event.event }}"
        assert deployments[name].parameters["dag"] == name
    schedule = deployments["sla-watch"].schedules[0].schedule
    assert schedule.interval.total_seconds() == 60


def test_a_copied_dag_with_an_added_notification_step_runs_as_an_override(
    prefect_server: None, receiver: NotificationReceiver, session: Session
) -> None:
    """As a new user would: copy the shipped evaluate DAG, add a step that tells the street office, save it."""
    import yaml

    from blocks.dag import DagDefinitionBlock
    from linli.models import StaffRole

    seeded(session)
    officer = session.exec(select(Staff).where(Staff.role == StaffRole.street_officer)).first()
    assert officer is not None
    definition = yaml.safe_load((get_settings().dag.definitions_dir / "evaluate.yaml").read_text(encoding="utf-8"))
    definition["steps"]["tell_street_office"] = {
        "task": "notify.send", "after": ["evaluate"],
        "with": {"targets": [f"staff:{officer.id}"], "kind": "notice", "template": "notice",
                 "context": {"title": "工单已评价", "text": "{{ steps.evaluate.result.case_number }}："
                                                        "{{ steps.evaluate.result.detail }}"}}}
    DagDefinitionBlock(yaml=yaml.safe_dump(definition, allow_unicode=True)).save("evaluate", overwrite=True)
    try:
        case = a_case(session)
        _run("report", case.id)
        session.refresh(case)
        accept(session, case.id, staff_id=case.assignee_id)
        resolve(session, case.id, staff_id=case.assignee_id, note="修好了")
        session.commit()
        assert _run("evaluate", case.id, "linli.case.resolved")["tell_street_office"] == "completed"
        (notice,) = receiver.wait_for(lambda m: "工单已评价" in str(m["json"]), count=1)
        assert f"{case.number}：rating requested" in notice["json"]["message"]
        assert officer.name in notice["json"]["message"]
    finally:
        DagDefinitionBlock.delete("evaluate")


def test_the_yaml_only_processes_tell_grid_workers_whom_to_visit_and_managers_the_weeks_figures(
    prefect_server: None, receiver: NotificationReceiver, session: Session
) -> None:
    from linli.models import Resident, ResidentKind, StaffRole

    seeded(session)
    case = a_case(session)
    _run("report", case.id)
    assert _run("elderly-care-checkin") == {"residents": "completed", "workers": "completed",
                                            "notify_workers": "completed"}
    key_people = session.exec(select(Resident).where(Resident.kind == ResidentKind.key)).all()
    workers = session.exec(select(Staff).where(Staff.role == StaffRole.grid_worker, Staff.on_duty == True)  # noqa: E712
                           ).all()
    checkins = session.exec(select(Notification).where(Notification.kind == "care_checkin")).all()
    assert key_people and sorted(n.target for n in checkins) == sorted(f"staff:{w.id}" for w in workers)
    body = checkins[0].body
    assert all(p.name not in body and p.name[0] + "*" in body for p in key_people)  # named, but masked
    assert all(n.status == NotificationStatus.sent for n in checkins)

    assert _run("weekly-summary")["send"] == "completed"
    summaries = session.exec(select(Notification).where(Notification.kind == "weekly_summary")).all()
    managers = session.exec(select(Staff).where(col(Staff.role).in_([StaffRole.street_officer, StaffRole.team_lead]),
                                                Staff.on_duty == True)).all()  # noqa: E712
    assert sorted(n.target for n in summaries) == sorted(f"staff:{m.id}" for m in managers)
    assert "新受理：1 件" in summaries[0].body and "当前在办：1 件" in summaries[0].body
    receiver.wait_for(lambda m: "工单周报" in str(m["json"]), count=len(summaries))
