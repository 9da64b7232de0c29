"""处置 — handling: the assignee accepts, notes progress, uploads an after-photo and resolves."""

from __future__ import annotations

from sqlmodel import Session, select

from linli.errors import ValidationError
from linli.loop.common import StepResult, get_case
from linli.models import Assignment, CasePhoto, CaseStatus, PhotoKind, utcnow
from linli.photos import photo_key, prepare_photo
from linli.statemachine import record, transition
from linli.storage import ObjectStore


def _check_assignee(case_assignee: int | None, staff_id: int, number: str) -> None:
    if case_assignee != staff_id:
        raise ValidationError(f"case {number} is not assigned to staff:{staff_id}", field="staff",
                              hint="only the current assignee may act on it; ask the dispatcher to reassign")


def accept(session: Session, case_ref: int | str, *, staff_id: int) -> StepResult:
    """The assignee accepts a dispatched case: it is now in progress."""
    case = get_case(session, case_ref)
    _check_assignee(case.assignee_id, staff_id, case.number)
    transition(session, case, CaseStatus.in_progress, actor=f"staff:{staff_id}", reason="accepted")
    assignment = session.exec(select(Assignment).where(Assignment.case_id == case.id,
                                                       Assignment.active == True)).first()  # noqa: E712
    if assignment is not None:
        assignment.accepted_at = utcnow()
        session.add(assignment)
    result = StepResult(case.id or 0, case.number, str(case.status))
    result.announce("in_progress", assignee=staff_id)
    return result


def progress(session: Session, case_ref: int | str, *, staff_id: int, note: str) -> StepResult:
    """A progress note on the timeline (the case stays in progress)."""
    case = get_case(session, case_ref)
    _check_assignee(case.assignee_id, staff_id, case.number)
    if not note.strip():
        raise ValidationError("a progress note needs text", field="note")
    if case.status != CaseStatus.in_progress:
        raise ValidationError(f"case {case.number} is {case.status}, not in progress", field="status",
                              hint="accept the case first")
    record(session, case, actor=f"staff:{staff_id}", action="progress", reason=note.strip())
    return StepResult(case.id or 0, case.number, str(case.status))


def resolve(
    session: Session, case_ref: int | str, *, staff_id: int, note: str = "", store: ObjectStore | None = None,
    photo: bytes | None = None, max_photo_bytes: int = 10 * 1024 * 1024,
) -> StepResult:
    """The assignee marks the case resolved, optionally with an after-photo."""
    case = get_case(session, case_ref)
    _check_assignee(case.assignee_id, staff_id, case.number)
    prepared = prepare_photo(photo, max_bytes=max_photo_bytes) if photo is not None else None
    if prepared is not None and store is None:
        raise ValidationError("an after-photo was given but no object store is configured", field="photo")
    transition(session, case, CaseStatus.resolved, actor=f"staff:{staff_id}", reason=note.strip() or "resolved")
    if prepared is not None and store is not None:
        key = photo_key(case.number, PhotoKind.after, prepared.extension)
        session.add(CasePhoto(case_id=case.id, kind=PhotoKind.after, key=key, content_type=prepared.content_type,
                              size=len(prepared.data)))
        session.flush()
        store.put(key, prepared.data, prepared.content_type)
    result = StepResult(case.id or 0, case.number, str(case.status))
    result.announce("resolved", assignee=staff_id)
    return result
