"""SLA watch (督办): warn before the deadline, escalate one level at it, restart stuck automated stages.

"小事不出社区，大事不出街道": level 0 is the community team, 1 the street office, 2 the district.
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime, timedelta

from pydantic.dataclasses import dataclass
from sqlmodel import Session, col, select

from linli.events import CaseEventOut, case_event
from linli.loop.assess import sla_of
from linli.loop.common import LoopConfig, StepResult, category_of, queue_notice
from linli.loop.dispatch import ensure_route, expire_claim_windows, routing_of
from linli.loop.evaluate import auto_close
from linli.models import Case, CaseStatus, Staff, StaffRole
from linli.statemachine import OPEN_STATUSES, record

LEVEL_NAMES = {0: "community", 1: "street office", 2: "district"}
MAX_LEVEL = 2


@dataclass
class SweepResult:
    """What one SLA sweep did."""

    warned: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)
    auto_closed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    notifications: list[int] = field(default_factory=list)
    events: list[CaseEventOut] = field(default_factory=list)


def escalation_targets(session: Session, case: Case, level: int, team: str) -> list[Staff]:
    """Who hears of an escalation to `level`: the community team lead, plus the officers of that level."""
    leads = session.exec(select(Staff).where(Staff.community_id == case.community_id, Staff.team == team,
                                             Staff.role == StaffRole.team_lead)).all()
    officers = session.exec(select(Staff).where(Staff.level == level, Staff.on_duty == True)  # noqa: E712
                            ).all() if level > 0 else []
    return list(leads) + list(officers)


def _warn(session: Session, case: Case, *, config: LoopConfig, now: datetime, out: SweepResult) -> None:
    case.warned_at = now
    session.add(case)
    routing = routing_of(session, case) if case.assignee_id is None else None
    handler = (f"staff:{case.assignee_id}" if case.assignee_id is not None
               else f"volunteer:{routing.volunteer_id}" if routing is not None and routing.volunteer_id else None)
    if handler is not None:
        out.notifications.append(queue_notice(session, config, case, kind="sla_warning", target=handler))
    record(session, case, actor="flow:sla-watch", action="sla_warning", reason=f"due {case.due_at:%Y-%m-%d %H:%M} UTC")
    out.warned.append(case.number)


def _escalate(session: Session, case: Case, *, config: LoopConfig, now: datetime, out: SweepResult) -> None:
    category = category_of(session, case)
    case.escalation_level += 1
    level = case.escalation_level
    chain = config.policy.level(level)
    name = chain.name_en if chain else LEVEL_NAMES.get(level, str(level))
    # The next level gets a fresh SLA period of its own; the warning fires again before it ends.
    sla_hours, warning_hours = sla_of(config.policy, category)
    case.due_at = now + timedelta(hours=sla_hours)
    case.warn_at = case.due_at - timedelta(hours=warning_hours)
    case.warned_at = None
    case.updated_at = now
    session.add(case)
    record(session, case, actor="flow:sla-watch", action="escalated",
           reason=f"SLA passed: escalated to level {level} ({name})")
    targets: list[str] = []
    if chain is None or chain.notify_staff:
        targets += [f"staff:{staff.id}" for staff in escalation_targets(session, case, level, category.team)]
    if chain is not None and chain.notify_urls:
        route = ensure_route(session, f"escalation-{level}", f"{chain.name_zh} / {chain.name_en}",
                             ",".join(chain.notify_urls))
        targets.append(f"route:{route.id}")
    for target in targets:
        out.notifications.append(queue_notice(session, config, case, kind="escalation", target=target,
                                              extra={"level": level}))
    out.escalated.append(case.number)
    out.events.append(case_event("escalated", case.id or 0, case.number, level=level))


def _restart_event(case: Case) -> str | None:
    """Which stage restarts a case idle in an automated stage (`restart.<stage>`), if any."""
    if case.status == CaseStatus.reported:
        return "restart.report"
    if case.status == CaseStatus.assessing:
        return "restart.dispatch" if case.due_at is not None else "restart.assess"
    if case.status == CaseStatus.reopened:
        return "restart.dispatch"
    if case.status == CaseStatus.resolved and case.rating_requested_at is None:
        return "restart.evaluate"
    return None


def sweep(session: Session, *, now: datetime, config: LoopConfig, limit: int = 1000) -> SweepResult:
    """One pass of the SLA watch over open cases (the caller commits)."""
    out = SweepResult()
    open_list = list(OPEN_STATUSES - {CaseStatus.reported})
    warn_due = session.exec(select(Case).where(col(Case.status).in_(open_list), col(Case.warn_at) <= now,
                                               col(Case.due_at) > now, col(Case.warned_at).is_(None))
                            .limit(limit).with_for_update(skip_locked=True)).all()
    for case in warn_due:
        _warn(session, case, config=config, now=now, out=out)
    top = min(config.policy.top_level, MAX_LEVEL)
    breached = session.exec(select(Case).where(col(Case.status).in_(open_list), col(Case.due_at) <= now,
                                               Case.escalation_level < top)
                            .limit(limit).with_for_update(skip_locked=True)).all()
    for case in breached:
        _escalate(session, case, config=config, now=now, out=out)
    for assigned in expire_claim_windows(session, now=now, config=config, limit=limit):
        out.fallback.append(assigned.case_number)
        out.notifications.extend(assigned.notifications)
        out.events.extend(assigned.events)
    for closed in auto_close(session, now=now, config=config, limit=limit):
        out.auto_closed.append(closed.case_number)
        out.notifications.extend(closed.notifications)
        out.events.extend(closed.events)
    stuck_before = now - timedelta(minutes=config.stuck_minutes)
    stuck = session.exec(select(Case).where(col(Case.status).in_(
        [CaseStatus.reported, CaseStatus.assessing, CaseStatus.reopened, CaseStatus.resolved]),
        col(Case.updated_at) <= stuck_before).limit(limit)).all()
    for case in stuck:
        what = _restart_event(case)
        if what is not None:
            out.events.append(case_event(what, case.id or 0, case.number, restarted=True))
            out.restarted.append(case.number)
    return out


__all__ = ["SweepResult", "StepResult", "sweep", "escalation_targets"]
