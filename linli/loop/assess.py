"""上报 → 研判 — receive a case (receipt to the reporter) and assess it (priority, SLA, routing)."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from linli.loop.common import LoopConfig, StepResult, category_of, lock_case, queue_notice
from linli.models import CaseStatus, utcnow
from linli.statemachine import record, transition

URGENT_WORDS = ("紧急", "危险", "着火", "冒烟", "煤气", "燃气", "urgent", "danger", "fire", "smoke", "gas")
URGENT_CATEGORIES = frozenset({"fire_hazard", "public_security"})


def receive(session: Session, case_id: int, *, config: LoopConfig) -> StepResult:
    """The report stage: send the reporter a receipt and hand the case to assessment."""
    case = lock_case(session, case_id)
    result = StepResult(case_id, case.number, str(case.status))
    if case.status != CaseStatus.reported:
        result.detail = f"already {case.status}; nothing to do"
        return result
    if case.reporter_id is not None:
        result.notifications.append(queue_notice(session, config, case, kind="receipt",
                                                 target=f"resident:{case.reporter_id}"))
    transition(session, case, CaseStatus.assessing, actor="flow:report", reason="report received")
    result.status = str(case.status)
    result.announce("assessing")
    return result


def priority_for(category_code: str, text: str) -> int:
    """1 urgent, 2 normal: urgent words in the text or a hazard category make a case urgent."""
    lowered = text.lower()
    if category_code in URGENT_CATEGORIES or any(word in lowered for word in URGENT_WORDS):
        return 1
    return 2


def assess(session: Session, case_id: int, *, config: LoopConfig) -> StepResult:
    """The assess stage (研判): priority, SLA deadline and warning time, routing to the category's team."""
    case = lock_case(session, case_id)
    result = StepResult(case_id, case.number, str(case.status))
    if case.status != CaseStatus.assessing or case.due_at is not None:
        result.detail = f"already assessed ({case.status}); nothing to do"
        return result
    category = category_of(session, case)
    case.priority = priority_for(category.code, case.description)
    sla_hours = category.sla_hours / 2 if case.priority == 1 else category.sla_hours
    now = utcnow()
    case.due_at = case.created_at + timedelta(hours=sla_hours)
    case.warn_at = case.due_at - timedelta(hours=min(category.warning_hours, sla_hours))
    case.updated_at = now
    session.add(case)
    record(session, case, actor="flow:assess", action="assessed",
           reason=f"priority {case.priority}; SLA {sla_hours:g} h; routed to team {category.team}")
    result.detail = f"priority {case.priority}, team {category.team}"
    result.announce("assessed", team=category.team, priority=case.priority)
    return result
