"""Work on a case by staff or volunteers: claim from the pool, accept, progress, photos, resolve, reassign.

An actor is written ``staff:ID`` or ``volunteer:ID``. A claim is one conditional UPDATE
(``… WHERE volunteer_id IS NULL``), so of two volunteers claiming at once exactly one wins, on
PostgreSQL and on SQLite alike; the loser gets a `Conflict`.
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from linli.errors import Conflict, NotFound, ValidationError
from linli.loop.common import LoopConfig, StepResult, category_of, get_case, queue_notice
from linli.loop.dispatch import assign_staff, choose_assignee, routing_of, serves
from linli.models import (
    Assignment,
    Case,
    CasePhoto,
    CaseRouting,
    CaseStatus,
    PhotoKind,
    Staff,
    Volunteer,
    VolunteerClaim,
    utcnow,
)
from linli.photos import photo_key, prepare_photo
from linli.policy import Route
from linli.statemachine import record, transition
from linli.storage import ObjectStore

ACTOR_KINDS = ("staff", "volunteer")


def parse_actor(actor: str) -> tuple[str, int]:
    """Split 'staff:3' / 'volunteer:5'; anything else is a ValidationError."""
    kind, _, raw = actor.strip().partition(":")
    if kind not in ACTOR_KINDS or not raw.isdigit():
        raise ValidationError(f"bad actor {actor!r}", field="actor", hint="write staff:ID or volunteer:ID")
    return kind, int(raw)


def active_claims(session: Session, volunteer_id: int) -> int:
    """How many open claims a volunteer holds."""
    return session.exec(select(func.count()).select_from(VolunteerClaim)
                        .where(VolunteerClaim.volunteer_id == volunteer_id,
                               VolunteerClaim.active == True)).one()  # noqa: E712


def claim(session: Session, case_ref: int | str, *, volunteer_id: int, config: LoopConfig) -> StepResult:
    """A volunteer claims a case offered in the pool (抢单); one claim wins, capped per volunteer."""
    case = get_case(session, case_ref)
    # Locks the volunteer's row on PostgreSQL, so their own simultaneous claims count each other.
    volunteer = session.exec(select(Volunteer).where(Volunteer.id == volunteer_id).with_for_update()).first()
    if volunteer is None:
        raise NotFound(f"no volunteer {volunteer_id}", hint="give your volunteer id")
    routing = routing_of(session, case)
    now = utcnow()
    if routing is None or routing.route != Route.volunteer_pool.value or case.status != CaseStatus.dispatched:
        raise ValidationError(f"case {case.number} is not offered to volunteers", field="case",
                              hint="claim a case from the volunteer pool")
    if routing.volunteer_id is not None or case.assignee_id is not None:
        raise Conflict(f"case {case.number} has already been taken", hint="pick another case from the pool")
    if routing.pool_until is None or routing.pool_until <= now:
        raise Conflict(f"the claim window of case {case.number} has closed", hint="staff will take it")
    category = category_of(session, case)
    if not serves(volunteer, case, category.code):
        raise ValidationError(f"case {case.number} ({category.code}) is not offered to volunteer:{volunteer_id}",
                              field="volunteer", hint="volunteers claim cases of their skills in their community")
    cap = min(config.policy.claim.max_open_claims, volunteer.max_open_claims)
    if active_claims(session, volunteer_id) >= cap:
        raise ValidationError(f"volunteer:{volunteer_id} already holds {cap} open claim(s), the most allowed",
                              field="volunteer", hint="finish a claimed case first")
    taken = session.execute(
        update(CaseRouting).where(col(CaseRouting.case_id) == case.id, col(CaseRouting.volunteer_id).is_(None))
        .values(volunteer_id=volunteer_id, claimed_at=now)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]  # the other claim committed first
        raise Conflict(f"case {case.number} has already been taken", hint="pick another case from the pool")
    session.add(VolunteerClaim(case_id=case.id or 0, volunteer_id=volunteer_id, claimed_at=now))
    record(session, case, actor=f"volunteer:{volunteer_id}", action="claimed", reason="claimed from the pool")
    case.updated_at = now
    session.add(case)
    result = StepResult(case.id or 0, case.number, str(case.status), detail=f"claimed by volunteer:{volunteer_id}")
    result.notifications.append(queue_notice(session, config, case, kind="assignment",
                                             target=f"volunteer:{volunteer_id}"))
    result.announce("claimed", volunteer=volunteer_id)
    return result


def _check_handler(session: Session, case: Case, actor: str) -> tuple[str, int]:
    kind, actor_id = parse_actor(actor)
    if kind == "staff":
        ok = case.assignee_id == actor_id
    else:
        routing = routing_of(session, case)
        ok = case.assignee_id is None and routing is not None and routing.volunteer_id == actor_id
    if not ok:
        raise ValidationError(f"case {case.number} is not assigned to {actor}", field="actor",
                              hint="only the current assignee may act on it; ask the dispatcher to reassign")
    return kind, actor_id


def accept(session: Session, case_ref: int | str, *, actor: str) -> StepResult:
    """The assignee (staff or the volunteer who claimed it) accepts: the case is in progress."""
    case = get_case(session, case_ref)
    kind, actor_id = _check_handler(session, case, actor)
    transition(session, case, CaseStatus.in_progress, actor=actor, reason="accepted")
    now = utcnow()
    if kind == "staff":
        row = session.exec(select(Assignment).where(Assignment.case_id == case.id,
                                                    Assignment.active == True)).first()  # noqa: E712
    else:
        row = session.exec(select(VolunteerClaim).where(VolunteerClaim.case_id == case.id,
                                                        VolunteerClaim.active == True)).first()  # type: ignore[assignment]  # noqa: E712
    if row is not None:
        row.accepted_at = now
        session.add(row)
    result = StepResult(case.id or 0, case.number, str(case.status))
    result.announce("in_progress", **{kind: actor_id})
    return result


def progress(session: Session, case_ref: int | str, *, actor: str, note: str) -> StepResult:
    """A progress note on the timeline (the case stays in progress)."""
    case = get_case(session, case_ref)
    _check_handler(session, case, actor)
    if not note.strip():
        raise ValidationError("a progress note needs text", field="note")
    if case.status != CaseStatus.in_progress:
        raise ValidationError(f"case {case.number} is {case.status}, not in progress", field="status",
                              hint="accept the case first")
    record(session, case, actor=actor, action="progress", reason=note.strip()[:1000])
    return StepResult(case.id or 0, case.number, str(case.status), detail="progress noted")


def add_photo(session: Session, case: Case, *, kind: PhotoKind, store: ObjectStore, photo: bytes,
              max_photo_bytes: int, actor: str) -> CasePhoto:
    """Check, clean (EXIF gone) and store one photo of a case; the row is added, the object put last."""
    prepared = prepare_photo(photo, max_bytes=max_photo_bytes)
    key = photo_key(case.number, kind, prepared.extension)
    row = CasePhoto(case_id=case.id or 0, kind=kind, key=key, content_type=prepared.content_type,
                    size=len(prepared.data))
    session.add(row)
    record(session, case, actor=actor, action="photo", reason=f"{kind} photo")
    session.flush()
    store.put(key, prepared.data, prepared.content_type)
    return row


def resolve(session: Session, case_ref: int | str, *, actor: str, note: str = "", store: ObjectStore | None = None,
            photo: bytes | None = None, max_photo_bytes: int = 10 * 1024 * 1024) -> StepResult:
    """The assignee marks the case resolved, optionally with an after-photo; a volunteer's claim ends."""
    case = get_case(session, case_ref)
    kind, _ = _check_handler(session, case, actor)
    if photo is not None:
        prepare_photo(photo, max_bytes=max_photo_bytes)  # refuse a bad photo before anything is written
        if store is None:
            raise ValidationError("an after-photo was given but no object store is configured", field="photo")
    transition(session, case, CaseStatus.resolved, actor=actor, reason=note.strip()[:1000] or "resolved")
    if kind == "volunteer":
        for row in session.exec(select(VolunteerClaim).where(VolunteerClaim.case_id == case.id,
                                                             VolunteerClaim.active == True)).all():  # noqa: E712
            row.active, row.ended_at = False, utcnow()
            session.add(row)
    if photo is not None and store is not None:
        add_photo(session, case, kind=PhotoKind.after, store=store, photo=photo, max_photo_bytes=max_photo_bytes,
                  actor=actor)
    result = StepResult(case.id or 0, case.number, str(case.status))
    result.announce("resolved", actor=actor)
    return result


def reassign(session: Session, case_ref: int | str, *, by: str, reason: str, config: LoopConfig,
             to_staff: int | None = None, to_team: str | None = None) -> StepResult:
    """Reassign (another person) or transfer (another team) a dispatched or in-progress case, with a reason."""
    case = get_case(session, case_ref)
    if not reason.strip():
        raise ValidationError("a reassignment needs a reason", field="reason", hint="say why it moves")
    if case.status not in (CaseStatus.dispatched, CaseStatus.in_progress):
        raise ValidationError(f"case {case.number} is {case.status}; only dispatched or in-progress cases move",
                              field="status")
    if (to_staff is None) == (to_team is None):
        raise ValidationError("name either a staff member or a team", field="to",
                              hint="--staff ID to reassign, --team NAME to transfer")
    if to_staff is not None:
        staff = session.get(Staff, to_staff)
        if staff is None:
            raise NotFound(f"no staff member {to_staff}")
        if not staff.on_duty:
            raise ValidationError(f"staff:{to_staff} is off duty", field="staff", hint="pick someone on duty")
        why = f"reassigned by {by}: {reason.strip()}"
    else:
        assert to_team is not None
        if session.exec(select(Staff).where(Staff.team == to_team)).first() is None:
            raise NotFound(f"no team {to_team!r}", hint="use a team that has staff, e.g. property, community")
        found = choose_assignee(session, case, to_team)
        if found is None:
            raise ValidationError(f"nobody in team {to_team} is on duty with capacity", field="team",
                                  hint="try later or pick a person")
        staff, why = found, f"transferred to team {to_team} by {by}: {reason.strip()}"
    routing = routing_of(session, case)
    if routing is not None and to_team is not None:
        routing.team = to_team
        session.add(routing)
    result = StepResult(case.id or 0, case.number, str(case.status))
    assign_staff(session, case, staff, why=why[:500], actor=by, config=config, result=result,
                 extra={"note": reason.strip()})
    return result
