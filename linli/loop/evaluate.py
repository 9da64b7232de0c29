"""评价 — evaluation: the reporter rates; a good rating closes, a bad one reopens, silence closes later."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from linli.errors import ValidationError
from linli.loop.common import LoopConfig, StepResult, get_case, lock_case, queue_notice
from linli.models import Case, CaseStatus, Feedback, utcnow
from linli.statemachine import record, transition


def _latest_feedback(session: Session, case: Case) -> Feedback | None:
    return session.exec(select(Feedback).where(Feedback.case_id == case.id)
                        .order_by(col(Feedback.id).desc())).first()


def _pending_feedback(session: Session, case: Case) -> Feedback | None:
    """The rating given for the current resolution, if any (a rating of an earlier round does not count)."""
    feedback = _latest_feedback(session, case)
    if feedback is None or case.resolved_at is None or feedback.at < case.resolved_at:
        return None
    return feedback


def evaluate(session: Session, case_id: int, *, config: LoopConfig) -> StepResult:
    """The evaluate stage: ask for a rating once resolved; when rated, close or reopen."""
    case = lock_case(session, case_id)
    result = StepResult(case_id, case.number, str(case.status))
    if case.status != CaseStatus.resolved:
        result.detail = f"{case.status}; nothing to evaluate"
        return result
    feedback = _pending_feedback(session, case)
    if feedback is not None:
        return _conclude(session, case, feedback, config=config, result=result)
    if case.rating_requested_at is None:
        case.rating_requested_at = utcnow()
        session.add(case)
        if case.reporter_id is not None:
            result.notifications.append(queue_notice(session, config, case, kind="rating_request",
                                                     target=f"resident:{case.reporter_id}",
                                                     extra={"auto_close_days": config.auto_close_days}))
            record(session, case, actor="flow:evaluate", action="rating_requested", reason="asked the reporter")
            result.detail = "rating requested"
        else:
            record(session, case, actor="flow:evaluate", action="rating_requested",
                   reason=f"anonymous report: closes by itself after {config.auto_close_days:g} days")
            result.detail = "anonymous: waits for auto-close"
    return result


def _conclude(session: Session, case: Case, feedback: Feedback, *, config: LoopConfig,
              result: StepResult) -> StepResult:
    if feedback.rating >= config.good_rating:
        transition(session, case, CaseStatus.closed, actor="flow:evaluate",
                   reason=f"rated {feedback.rating}/5")
        if case.reporter_id is not None:
            result.notifications.append(queue_notice(session, config, case, kind="closed",
                                                     target=f"resident:{case.reporter_id}",
                                                     extra={"rating": feedback.rating}))
        result.announce("closed", rating=feedback.rating)
    else:
        transition(session, case, CaseStatus.reopened, actor="flow:evaluate",
                   reason=f"rated {feedback.rating}/5: {feedback.comment or 'unsatisfied'}")
        result.announce("reopened", rating=feedback.rating)
    result.status = str(case.status)
    result.detail = f"rated {feedback.rating}"
    return result


def rate(session: Session, case_ref: int | str, *, resident_id: int, rating: int, comment: str = "") -> StepResult:
    """The reporter rates a resolved case (1–5, optional comment)."""
    case = get_case(session, case_ref)
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ValidationError(f"rating must be a whole number from 1 to 5, not {rating!r}", field="rating")
    if case.reporter_id is None or case.reporter_id != resident_id:
        raise ValidationError(f"only the reporter of case {case.number} may rate it", field="resident",
                              hint="rate your own reports")
    if case.status != CaseStatus.resolved:
        raise ValidationError(f"case {case.number} is {case.status}; only a resolved case can be rated",
                              field="status")
    if _pending_feedback(session, case) is not None:
        raise ValidationError(f"case {case.number} has already been rated", field="rating")
    session.add(Feedback(case_id=case.id, rating=rating, comment=comment.strip()[:1000], by=f"resident:{resident_id}"))
    record(session, case, actor=f"resident:{resident_id}", action="rated", reason=f"{rating}/5 {comment}".strip())
    result = StepResult(case.id or 0, case.number, str(case.status))
    result.announce("rated", rating=rating)
    return result


def auto_close(session: Session, *, now: datetime, config: LoopConfig, limit: int = 500) -> list[StepResult]:
    """Close resolved cases nobody rated within the window, as satisfied by default."""
    cutoff = now - timedelta(days=config.auto_close_days)
    cases = session.exec(select(Case).where(Case.status == CaseStatus.resolved, col(Case.resolved_at) <= cutoff)
                         .limit(limit).with_for_update(skip_locked=True)).all()
    results = []
    for case in cases:
        if _pending_feedback(session, case) is not None:
            continue  # a rating arrived: the evaluate flow concludes it
        transition(session, case, CaseStatus.closed, actor="flow:sla-watch",
                   reason=f"no rating within {config.auto_close_days:g} days: closed as satisfied by default")
        result = StepResult(case.id or 0, case.number, str(case.status), detail="auto-closed")
        if case.reporter_id is not None:
            result.notifications.append(queue_notice(session, config, case, kind="closed",
                                                     target=f"resident:{case.reporter_id}", extra={"auto": True}))
        result.announce("closed", auto=True)
        results.append(result)
    return results
