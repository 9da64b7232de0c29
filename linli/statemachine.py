"""The case state machine: the one place that says which status may follow which.

    reported → assessing → dispatched → in_progress → resolved → closed
                    ↘ merged / rejected              resolved → reopened → dispatched …

Every change goes through `transition`, which checks the move, stamps the case and writes one
timeline line. An illegal move raises `IllegalTransition` before anything is touched.
"""

from __future__ import annotations

from sqlmodel import Session

from linli.errors import IllegalTransition
from linli.models import Case, CaseEvent, CaseStatus, utcnow

S = CaseStatus

TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    S.reported: frozenset({S.assessing, S.merged, S.rejected}),
    S.assessing: frozenset({S.dispatched, S.merged, S.rejected}),
    S.dispatched: frozenset({S.in_progress, S.dispatched, S.assessing}),  # dispatched→dispatched: reassign
    S.in_progress: frozenset({S.resolved, S.dispatched}),  # in_progress→dispatched: transfer
    S.resolved: frozenset({S.closed, S.reopened}),
    S.reopened: frozenset({S.dispatched}),
    S.closed: frozenset(),
    S.merged: frozenset(),
    S.rejected: frozenset(),
}

OPEN_STATUSES = frozenset({S.reported, S.assessing, S.dispatched, S.in_progress, S.reopened})
FINAL_STATUSES = frozenset(status for status, nexts in TRANSITIONS.items() if not nexts)

# Which timestamp a status stamps on the case when first reached.
_STAMPS = {
    S.assessing: "assessed_at",
    S.dispatched: "dispatched_at",
    S.resolved: "resolved_at",
    S.closed: "closed_at",
}


def can_transition(current: CaseStatus, target: CaseStatus) -> bool:
    """Whether a case in `current` may move to `target`."""
    return target in TRANSITIONS[CaseStatus(current)]


def transition(
    session: Session, case: Case, target: CaseStatus, *, actor: str, reason: str = ""
) -> CaseEvent:
    """Move `case` to `target`, stamp it and add the timeline line (the caller commits)."""
    current = CaseStatus(case.status)
    target = CaseStatus(target)
    if not can_transition(current, target):
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (the case is final)"
        raise IllegalTransition(
            f"case {case.number} cannot go from {current} to {target}",
            hint=f"from {current} it may go to: {allowed}",
        )
    now = utcnow()
    case.status = target
    case.updated_at = now
    stamp = _STAMPS.get(target)
    if stamp is not None and (getattr(case, stamp) is None or target in (S.dispatched, S.resolved)):
        setattr(case, stamp, now)
    if target == S.reopened:
        case.resolved_at = None
        case.rating_requested_at = None
    entry = CaseEvent(
        case_id=case.id, at=now, actor=actor, action="transition", from_status=current, to_status=target,
        reason=reason,
    )
    session.add(case)
    session.add(entry)
    return entry


def record(session: Session, case: Case, *, actor: str, action: str, reason: str = "") -> CaseEvent:
    """Write a timeline line that is not a status change (assigned, escalated, notified, rated …)."""
    entry = CaseEvent(case_id=case.id, actor=actor, action=action, reason=reason)
    session.add(entry)
    return entry
