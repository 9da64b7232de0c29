"""上报 → 研判 — receive a case (receipt to the reporter) and assess it: reject, merge, or prioritise and route."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, select

from linli.errors import ValidationError
from linli.loop.common import LoopConfig, StepResult, category_of, lock_case, queue_notice
from linli.loop.intake import distance_m
from linli.models import Case, CaseRouting, CaseStatus, Category, utcnow
from linli.policy import (
    GovernancePolicy,
    Route,
    default_policy,
    difficulty_for,
    rejection_for,
    route_for,
)
from linli.policy import priority_for as policy_priority
from linli.statemachine import record, transition

# Cases a new report may be merged into: assessed and still open.
MERGEABLE = (CaseStatus.dispatched, CaseStatus.in_progress, CaseStatus.reopened)


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


def priority_for(category_code: str, text: str, policy: GovernancePolicy | None = None) -> int:
    """1 urgent, 2 normal, 3 low: the policy's first matching priority rule (default policy if None)."""
    return policy_priority(policy or default_policy(), category_code, text)


def sla_of(policy: GovernancePolicy, category: Category) -> tuple[float, float]:
    """(handling hours, warning hours) of a category: the policy's row, else the category table's."""
    row = policy.category(category.code)
    return (row.sla_hours, row.warning_hours) if row else (category.sla_hours, category.warning_hours)


def assess(session: Session, case_id: int, *, config: LoopConfig) -> StepResult:
    """The assess stage (研判): reject, merge a duplicate, or set priority, difficulty, SLA and route."""
    case = lock_case(session, case_id)
    result = StepResult(case_id, case.number, str(case.status))
    if case.status != CaseStatus.assessing or case.due_at is not None:
        result.detail = f"already assessed ({case.status}); nothing to do"
        return result
    policy = config.policy
    category = category_of(session, case)
    reason = rejection_for(policy, case.description)
    if reason is not None:
        return reject(session, case, reason=reason, actor="flow:assess", config=config, result=result)
    original = find_duplicate(session, case, policy)
    if original is not None:
        return merge(session, case, original, config=config, result=result)
    case.priority = priority_for(category.code, case.description, policy)
    difficulty = difficulty_for(policy, category.code, case.description)
    route = route_for(policy, category.code, difficulty)
    row = policy.category(category.code)
    team = (row.team if row and row.team else "") or category.team
    agency = row.agency if row and route == Route.external_agency else ""
    sla_hours, warning_hours = sla_of(policy, category)
    sla_hours = sla_hours / 2 if case.priority == 1 else sla_hours
    now = utcnow()
    case.due_at = case.created_at + timedelta(hours=sla_hours)
    case.warn_at = case.due_at - timedelta(hours=min(warning_hours, sla_hours))
    case.updated_at = now
    session.add(case)
    routing = session.exec(select(CaseRouting).where(CaseRouting.case_id == case.id)).first()
    routing = routing or CaseRouting(case_id=case.id or 0, route=route.value)
    routing.route, routing.difficulty, routing.team, routing.agency_code = route.value, difficulty, team, agency
    session.add(routing)
    where = f"agency {agency}" if agency else ("volunteer pool" if route == Route.volunteer_pool else f"team {team}")
    record(session, case, actor="flow:assess", action="assessed",
           reason=f"priority {case.priority}; difficulty {difficulty}; SLA {sla_hours:g} h; routed to {where}")
    result.detail = f"priority {case.priority}, {where}"
    result.announce("assessed", team=team, priority=case.priority, route=route.value, difficulty=difficulty)
    return result


def find_duplicate(session: Session, case: Case, policy: GovernancePolicy) -> Case | None:
    """An open, already-assessed case of the same category within the policy's radius and window."""
    window = policy.duplicate
    # Distance needs two points: reports without coordinates (a building only) are never merged.
    if window.window_hours <= 0 or case.lat is None or case.lon is None:
        return None
    since = case.created_at - timedelta(hours=window.window_hours)
    candidates = session.exec(
        select(Case).where(Case.category_id == case.category_id, Case.id != case.id,
                           Case.community_id == case.community_id, col(Case.status).in_(MERGEABLE),
                           col(Case.created_at) >= since, col(Case.created_at) <= case.created_at)
        .order_by(col(Case.created_at))
    ).all()
    for other in candidates:
        if other.lat is not None and other.lon is not None and \
                distance_m(case.lat, case.lon, other.lat, other.lon) <= window.radius_m:
            return other
    return None


def merge(session: Session, case: Case, original: Case, *, config: LoopConfig, result: StepResult) -> StepResult:
    """Merge `case` into the open case `original`; the reporter is told which case to follow."""
    case.merged_into_id = original.id
    transition(session, case, CaseStatus.merged, actor="flow:assess", reason=f"duplicate of {original.number}")
    record(session, original, actor="flow:assess", action="merged_in",
           reason=f"{case.number}: {case.description[:200]}")
    if case.reporter_id is not None:
        result.notifications.append(queue_notice(session, config, case, kind="merged",
                                                 target=f"resident:{case.reporter_id}",
                                                 extra={"original": original.number}))
    result.status = str(case.status)
    result.detail = f"merged into {original.number}"
    result.announce("merged", into=original.number)
    return result


def reject(session: Session, case: Case, *, reason: str, actor: str, config: LoopConfig,
           result: StepResult | None = None) -> StepResult:
    """Reject a case with a reason (not ours, invalid); the reporter is told why."""
    result = result or StepResult(case.id or 0, case.number, str(case.status))
    if not reason.strip():
        raise ValidationError("a rejection needs a reason", field="reason", hint="say why the case is not taken")
    case.reject_reason = reason.strip()[:500]
    transition(session, case, CaseStatus.rejected, actor=actor, reason=case.reject_reason)
    if case.reporter_id is not None:
        result.notifications.append(queue_notice(session, config, case, kind="rejected",
                                                 target=f"resident:{case.reporter_id}",
                                                 extra={"reason": case.reject_reason}))
    result.status = str(case.status)
    result.detail = f"rejected: {case.reject_reason}"
    result.announce("rejected", reason=case.reject_reason)
    return result
