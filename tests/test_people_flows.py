"""The registry's scheduled DAGs through the generic runner in Prefect's test harness: the patrol watch
alerts the security lead through a real HTTP receiver; the retention purge anonymises and deletes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import Session, select

from flows.dag_runner import run_dag
from linli.models import Case, CaseStatus, Staff, StaffRole, utcnow
from linli.models.registry import AuditEntry, PatrolIssue
from linli.patrol import CheckpointIn, create_route
from linli.receiver import NotificationReceiver
from linli.settings import Settings
from tests.factories import a_case, seeded


def test_the_patrol_watch_dag_alerts_the_security_lead_of_a_skipped_checkpoint(
    prefect_server: None, receiver: NotificationReceiver, session: Session
) -> None:
    seeded(session)
    lead = session.exec(select(Staff).where(Staff.team == "security", Staff.role == StaffRole.team_lead)).first()
    assert lead is not None
    # A window at local midnight with no grace: over by the time the test runs (except in that one minute).
    create_route(session, code="XFL-NIGHT", name="幸福里夜巡", community="XFL", lead_staff_id=lead.id,
                 checkpoints=[CheckpointIn("CP-GATE", "东门", "00:00", "00:01", 0)])
    session.commit()
    assert asyncio.run(run_dag(dag="patrol-watch")) == {"check": "completed"}
    [alert] = receiver.wait_for(lambda m: "巡更异常" in str(m["json"]), count=1, timeout=20)
    assert "东门" in alert["json"]["message"] and "漏巡" in alert["json"]["message"]
    assert [i.kind for i in session.exec(select(PatrolIssue)).all()] == ["missed"]
    # The next run alerts nobody again.
    assert asyncio.run(run_dag(dag="patrol-watch")) == {"check": "completed"}
    assert len(session.exec(select(PatrolIssue)).all()) == 1


def test_the_retention_dag_anonymises_closed_cases_past_their_period(prefect_server: None, settings: Settings,
                                                                      session: Session) -> None:
    seeded(session)
    case = a_case(session)
    case.status, case.closed_at = CaseStatus.closed, utcnow() - timedelta(days=40)
    session.add(case)
    session.commit()
    steps = asyncio.run(run_dag(dag="retention", params={"closed_case_days": 30}))
    assert steps == {"purge": "completed"}
    session.expire_all()
    purged = session.get(Case, case.id)
    assert purged is not None and purged.reporter_id is None and purged.reporter_name == ""
    [entry] = session.exec(select(AuditEntry).where(AuditEntry.action == "purge")).all()
    assert "cases_anonymised=1" in entry.detail
