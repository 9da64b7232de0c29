"""处置 — dispatch: the case goes to an on-duty member of its category's team (round robin, capped)."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from linli.loop.common import LoopConfig, StepResult, category_of, lock_case, queue_notice
from linli.models import Assignment, Case, CaseStatus, Feedback, Staff, StaffRole, utcnow
from linli.registry import rostered_ids
from linli.statemachine import record, transition


def open_load(session: Session, staff_ids: list[int]) -> dict[int, int]:
    """Open (active) assignments per staff member."""
    rows = session.exec(
        select(Assignment.staff_id, func.count()).where(col(Assignment.staff_id).in_(staff_ids),
                                                        Assignment.active == True)  # noqa: E712
        .group_by(Assignment.staff_id)
    ).all()
    return {staff_id: count for staff_id, count in rows}


def choose_assignee(session: Session, case: Case, team: str) -> Staff | None:
    """Round robin among on-duty team members below their cap: the least recently assigned wins.

    Handlers go first; the team lead takes cases only when every handler is full or off duty.
    """
    candidates = session.exec(
        select(Staff).where(Staff.team == team, Staff.on_duty == True, Staff.level == 0,  # noqa: E712
                            Staff.community_id == case.community_id).order_by(Staff.id)
    ).all()
    rostered = rostered_ids(session, team=team)  # the duty roster, when the team keeps one
    if rostered is not None:
        candidates = [s for s in candidates if s.id in rostered]
    if not candidates:
        return None
    load = open_load(session, [s.id for s in candidates if s.id is not None])
    available = [s for s in candidates if load.get(s.id or 0, 0) < s.max_open]
    if not available:
        return None
    last_assigned = dict(session.exec(
        select(Assignment.staff_id, func.max(Assignment.assigned_at))
        .where(col(Assignment.staff_id).in_([s.id for s in available])).group_by(Assignment.staff_id)
    ).all())
    handlers = [s for s in available if s.role != StaffRole.team_lead] or available
    return min(handlers, key=lambda s: (last_assigned.get(s.id) is not None, last_assigned.get(s.id), s.id))


def _previous_handler(session: Session, case: Case) -> Staff | None:
    last = session.exec(select(Assignment).where(Assignment.case_id == case.id)
                        .order_by(col(Assignment.id).desc())).first()
    if last is None:
        return None
    staff = session.get(Staff, last.staff_id)
    return staff if staff is not None and staff.on_duty else None


def dispatch(session: Session, case_id: int, *, config: LoopConfig) -> StepResult:
    """The dispatch stage: assign an assessed or reopened case and tell the assignee."""
    case = lock_case(session, case_id)
    result = StepResult(case_id, case.number, str(case.status))
    reopened = case.status == CaseStatus.reopened
    if not (reopened or (case.status == CaseStatus.assessing and case.due_at is not None)):
        result.detail = f"not ready for dispatch ({case.status}); nothing to do"
        return result
    category = category_of(session, case)
    staff = _previous_handler(session, case) if reopened else None
    staff = staff or choose_assignee(session, case, category.team)
    if staff is None:
        record(session, case, actor="flow:dispatch", action="waiting",
               reason=f"no on-duty member of team {category.team} has capacity; will retry")
        result.detail = f"nobody available in team {category.team}"
        return result
    for old in session.exec(select(Assignment).where(Assignment.case_id == case.id,
                                                     Assignment.active == True)).all():  # noqa: E712
        old.active, old.ended_at = False, utcnow()
        session.add(old)
    why = "reopened: back to the handler" if reopened else f"team {category.team}, round robin"
    session.add(Assignment(case_id=case.id, staff_id=staff.id, reason=why))
    case.assignee_id = staff.id
    transition(session, case, CaseStatus.dispatched, actor="flow:dispatch",
               reason=f"assigned to staff:{staff.id} ({why})")
    if reopened:
        feedback = session.exec(select(Feedback).where(Feedback.case_id == case.id)
                                .order_by(col(Feedback.id).desc())).first()
        extra = {"rating": feedback.rating if feedback else None, "comment": feedback.comment if feedback else ""}
        result.notifications.append(queue_notice(session, config, case, kind="reopened",
                                                 target=f"staff:{staff.id}", extra=extra))
    else:
        result.notifications.append(queue_notice(session, config, case, kind="assignment",
                                                 target=f"staff:{staff.id}"))
    result.status = str(case.status)
    result.detail = f"assigned to staff:{staff.id}"
    result.announce("dispatched", assignee=staff.id)
    return result
