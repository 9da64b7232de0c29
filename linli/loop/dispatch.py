"""处置 — dispatch: by the assessment's route — the volunteer pool (抢单), a staff team, or an agency.

Staff get cases round robin among on-duty team members below their cap; what nobody claims from
the pool within the claim window falls back to staff (兜底派单, checked by the SLA watch).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from linli.loop.common import LoopConfig, StepResult, category_of, lock_case, queue_notice
from linli.models import (
    Assignment,
    Case,
    CaseRouting,
    CaseStatus,
    Feedback,
    NotifyRoute,
    Staff,
    StaffRole,
    Volunteer,
    VolunteerClaim,
    utcnow,
)
from linli.policy import Route
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


def choose_assignee(session: Session, case: Case, team: str, *, lead_first: bool = False) -> Staff | None:
    """Round robin among on-duty team members below their cap: the least recently assigned wins.

    Handlers go first; the team lead takes cases only when every handler is full or off duty —
    or first, for cases hard enough (`lead_first`, from the policy's difficulty threshold).
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
    leads = [s for s in available if s.role == StaffRole.team_lead]
    handlers = [s for s in available if s.role != StaffRole.team_lead]
    pool = (leads or handlers) if lead_first else (handlers or leads)
    return min(pool, key=lambda s: (last_assigned.get(s.id) is not None, last_assigned.get(s.id), s.id))


def routing_of(session: Session, case: Case) -> CaseRouting | None:
    """The assessment's routing row of a case (None for cases assessed before routing existed)."""
    return session.exec(select(CaseRouting).where(CaseRouting.case_id == case.id)).first()


def _previous_handler(session: Session, case: Case) -> Staff | None:
    last = session.exec(select(Assignment).where(Assignment.case_id == case.id)
                        .order_by(col(Assignment.id).desc())).first()
    if last is None:
        return None
    staff = session.get(Staff, last.staff_id)
    return staff if staff is not None and staff.on_duty else None


def end_assignments(session: Session, case: Case) -> None:
    """Close the case's active staff assignments and volunteer claims."""
    now = utcnow()
    for old in session.exec(select(Assignment).where(Assignment.case_id == case.id,
                                                     Assignment.active == True)).all():  # noqa: E712
        old.active, old.ended_at = False, now
        session.add(old)
    for claim in session.exec(select(VolunteerClaim).where(VolunteerClaim.case_id == case.id,
                                                           VolunteerClaim.active == True)).all():  # noqa: E712
        claim.active, claim.ended_at = False, now
        session.add(claim)


def assign_staff(session: Session, case: Case, staff: Staff, *, why: str, actor: str, config: LoopConfig,
                 result: StepResult, kind: str = "assignment", extra: dict[str, object] | None = None) -> None:
    """Give the case to `staff` (ending earlier assignments), move it to dispatched and tell them."""
    end_assignments(session, case)
    routing = routing_of(session, case)
    if routing is not None and routing.volunteer_id is not None:
        routing.volunteer_id = None
        session.add(routing)
    session.add(Assignment(case_id=case.id or 0, staff_id=staff.id or 0, reason=why[:500]))
    case.assignee_id = staff.id
    transition(session, case, CaseStatus.dispatched, actor=actor, reason=f"assigned to staff:{staff.id} ({why})")
    result.notifications.append(queue_notice(session, config, case, kind=kind, target=f"staff:{staff.id}",
                                             extra=extra))
    result.status = str(case.status)
    result.detail = f"assigned to staff:{staff.id}"
    result.announce("dispatched", assignee=staff.id)


def eligible_volunteers(session: Session, case: Case, category_code: str) -> list[Volunteer]:
    """Volunteers with the category among their skills who serve the case's grid (or its whole community)."""
    volunteers = session.exec(select(Volunteer).where(Volunteer.community_id == case.community_id)
                              .order_by(Volunteer.id)).all()
    return [v for v in volunteers if serves(v, case, category_code)]


def serves(volunteer: Volunteer, case: Case, category_code: str) -> bool:
    """Whether a case of this category is offered to this volunteer: their skill, community and grid."""
    return (category_code in {s.strip() for s in volunteer.skills.split(",")}
            and volunteer.community_id == case.community_id
            and (volunteer.grid_id is None or case.grid_id is None or volunteer.grid_id == case.grid_id))


def ensure_route(session: Session, code: str, name: str, url: str) -> NotifyRoute:
    """The notification route row for a policy's channel (created or updated to match the policy)."""
    row = session.exec(select(NotifyRoute).where(NotifyRoute.code == code)).first()
    row = row or NotifyRoute(code=code, name=name)
    row.name, row.contact_url = name[:100], url[:1000]
    session.add(row)
    session.flush()
    return row


def _offer_to_pool(session: Session, case: Case, routing: CaseRouting, volunteers: list[Volunteer], *,
                   config: LoopConfig, result: StepResult) -> None:
    window = config.policy.claim.window_minutes
    routing.pool_until = utcnow() + timedelta(minutes=window)
    session.add(routing)
    case.assignee_id = None
    transition(session, case, CaseStatus.dispatched, actor="flow:dispatch",
               reason=f"offered to {len(volunteers)} volunteer(s) for {window:g} min")
    for volunteer in volunteers:
        result.notifications.append(queue_notice(session, config, case, kind="offer",
                                                 target=f"volunteer:{volunteer.id}",
                                                 extra={"window_minutes": window}))
    result.status = str(case.status)
    result.detail = f"offered to {len(volunteers)} volunteers"
    result.announce("offered", volunteers=[v.id for v in volunteers])


def _back_to_volunteer(session: Session, case: Case, routing: CaseRouting, *, config: LoopConfig,
                       result: StepResult, extra: dict[str, object]) -> None:
    volunteer_id = routing.volunteer_id
    assert volunteer_id is not None
    end_assignments(session, case)
    session.add(VolunteerClaim(case_id=case.id or 0, volunteer_id=volunteer_id))
    transition(session, case, CaseStatus.dispatched, actor="flow:dispatch",
               reason=f"reopened: back to volunteer:{volunteer_id}")
    result.notifications.append(queue_notice(session, config, case, kind="reopened",
                                             target=f"volunteer:{volunteer_id}", extra=extra))
    result.status = str(case.status)
    result.detail = f"back to volunteer:{volunteer_id}"
    result.announce("dispatched", volunteer=volunteer_id)


def dispatch(session: Session, case_id: int, *, config: LoopConfig) -> StepResult:
    """The dispatch stage: route an assessed case (pool, team, agency) or give a reopened one back."""
    case = lock_case(session, case_id)
    result = StepResult(case_id, case.number, str(case.status))
    reopened = case.status == CaseStatus.reopened
    if not (reopened or (case.status == CaseStatus.assessing and case.due_at is not None)):
        result.detail = f"not ready for dispatch ({case.status}); nothing to do"
        return result
    category = category_of(session, case)
    routing = routing_of(session, case)
    team = (routing.team if routing else "") or category.team
    lead_first = routing is not None and routing.difficulty >= config.policy.dispatch.lead_from_difficulty
    if reopened:
        feedback = session.exec(select(Feedback).where(Feedback.case_id == case.id)
                                .order_by(col(Feedback.id).desc())).first()
        extra: dict[str, object] = {"rating": feedback.rating if feedback else None,
                                    "comment": feedback.comment if feedback else ""}
        if routing is not None and routing.volunteer_id is not None:
            _back_to_volunteer(session, case, routing, config=config, result=result, extra=extra)
            return result
        staff = _previous_handler(session, case) or choose_assignee(session, case, team, lead_first=lead_first)
        if staff is None:
            return _waiting(session, case, team, result)
        assign_staff(session, case, staff, why="reopened: back to the handler", actor="flow:dispatch",
                     config=config, result=result, kind="reopened", extra=extra)
        return result
    route = Route(routing.route) if routing else Route.staff_team
    why = f"team {team}, round robin"
    if route == Route.volunteer_pool and routing is not None:
        volunteers = eligible_volunteers(session, case, category.code)
        if volunteers:
            _offer_to_pool(session, case, routing, volunteers, config=config, result=result)
            return result
        why = f"no volunteer with skill {category.code}: team {team}"
    if route == Route.external_agency and routing is not None:
        why = refer(session, case, routing.agency_code, config=config, result=result) + f"; follow-up by team {team}"
    staff = choose_assignee(session, case, team, lead_first=lead_first)
    if staff is None:
        return _waiting(session, case, team, result)
    assign_staff(session, case, staff, why=why, actor="flow:dispatch", config=config, result=result)
    return result


def refer(session: Session, case: Case, agency_code: str, *, config: LoopConfig, result: StepResult) -> str:
    """Refer a case to an external agency through its own channel; return the timeline's wording."""
    agency = config.policy.agency(agency_code)
    if agency is None:
        record(session, case, actor="flow:dispatch", action="referral_failed",
               reason=f"agency {agency_code!r} is no longer in the policy")
        return f"agency {agency_code} unknown"
    route = ensure_route(session, f"agency-{agency.code}", agency.name, agency.contact_url)
    record(session, case, actor="flow:dispatch", action="referred", reason=f"referred to {agency.name}")
    result.notifications.append(queue_notice(session, config, case, kind="referral", target=f"route:{route.id}",
                                             extra={"agency": agency.name}))
    result.announce("referred", agency=agency.code)
    return f"referred to {agency.name}"


def _waiting(session: Session, case: Case, team: str, result: StepResult) -> StepResult:
    record(session, case, actor="flow:dispatch", action="waiting",
           reason=f"no on-duty member of team {team} has capacity; will retry")
    result.detail = f"nobody available in team {team}"
    return result


def expire_claim_windows(session: Session, *, now: datetime, config: LoopConfig, limit: int = 500
                         ) -> list[StepResult]:
    """Cases nobody claimed from the pool in time go to on-duty staff by category and difficulty (兜底)."""
    rows = session.exec(
        select(Case, CaseRouting).join(CaseRouting, col(CaseRouting.case_id) == Case.id)
        .where(CaseRouting.route == Route.volunteer_pool.value, col(CaseRouting.volunteer_id).is_(None),
               col(CaseRouting.pool_until) <= now, Case.status == CaseStatus.dispatched,
               col(Case.assignee_id).is_(None))
        .limit(limit).with_for_update(skip_locked=True)
    ).all()
    results = []
    for case, routing in rows:
        result = StepResult(case.id or 0, case.number, str(case.status))
        category = category_of(session, case)
        team = routing.team or category.team
        lead_first = routing.difficulty >= config.policy.dispatch.lead_from_difficulty
        staff = choose_assignee(session, case, team, lead_first=lead_first)
        if staff is None:
            continue  # tried again at the next sweep; the SLA clock keeps running meanwhile
        routing.pool_until = None  # the pool is closed for this case
        session.add(routing)
        assign_staff(session, case, staff, actor="flow:sla-watch", config=config, result=result,
                     why=f"nobody claimed it within the claim window: fallback to team {team}, "
                     f"difficulty {routing.difficulty}")
        results.append(result)
    return results
