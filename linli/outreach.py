"""Queries behind the YAML-only processes: who to check on, who to tell, and a period's case figures.

Names of residents are masked (privacy.mask_name); staff are named, as in assignments.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from linli.errors import NotFound, ValidationError
from linli.models import Building, Case, Category, Community, Feedback, Resident, ResidentKind, Staff, StaffRole
from linli.privacy import mask_name
from linli.statemachine import OPEN_STATUSES


class ResidentToVisit(BaseModel):
    """A key-tagged resident (重点人员, e.g. an elderly person living alone), masked."""

    name: str
    community: str
    building: str


class CaseDigest(BaseModel):
    """What happened to cases over a period, for managers."""

    days: int
    opened: int
    closed: int
    open_now: int
    overdue_now: int
    ratings: int
    rating_mean: float | None
    top_categories: list[str]


def _community_id(session: Session, code: str) -> int | None:
    if not code:
        return None
    community = session.exec(select(Community).where(Community.code == code)).first()
    if community is None or community.id is None:
        raise NotFound(f"no community with code {code!r}", hint="use a code from `linli seed`, e.g. XFL")
    return community.id


def key_residents(session: Session, *, community: str = "") -> list[ResidentToVisit]:
    """Key-tagged residents of one community (by code) or of all, names masked."""
    query = (select(Resident, Community, Building).join(Community, col(Community.id) == Resident.community_id)
             .outerjoin(Building, col(Building.id) == Resident.building_id)
             .where(Resident.kind == ResidentKind.key).order_by(col(Resident.id)))
    community_id = _community_id(session, community)
    if community_id is not None:
        query = query.where(Resident.community_id == community_id)
    return [ResidentToVisit(name=mask_name(r.name), community=c.name, building=b.name if b else "")
            for r, c, b in session.exec(query).all()]


def staff_targets(session: Session, *, roles: list[str], community: str = "", on_duty_only: bool = True) -> list[str]:
    """Notification targets ('staff:ID') of the staff in these roles, in one community or anywhere."""
    bad = [role for role in roles if role not in StaffRole.__members__]
    if bad:
        raise ValidationError(f"unknown staff role {', '.join(bad)}", field="roles",
                              hint="use: " + ", ".join(StaffRole))
    query = select(Staff.id).where(col(Staff.role).in_(roles)).order_by(col(Staff.id))
    if on_duty_only:
        query = query.where(Staff.on_duty == True)  # noqa: E712
    community_id = _community_id(session, community)
    if community_id is not None:
        query = query.where(Staff.community_id == community_id)
    return [f"staff:{staff_id}" for staff_id in session.exec(query).all()]


def case_digest(session: Session, *, now: datetime, days: int, top: int = 3) -> CaseDigest:
    """Cases opened and closed in the last `days`, open and overdue now, ratings, the busiest categories."""
    since = now - timedelta(days=days)
    opened = session.exec(select(func.count()).select_from(Case).where(col(Case.created_at) >= since)).one()
    closed = session.exec(select(func.count()).select_from(Case).where(col(Case.closed_at) >= since)).one()
    open_now = session.exec(select(func.count()).select_from(Case).where(col(Case.status).in_(OPEN_STATUSES))).one()
    overdue = session.exec(select(func.count()).select_from(Case).where(
        col(Case.status).in_(OPEN_STATUSES), col(Case.due_at) < now)).one()
    ratings, mean = session.exec(select(func.count(), func.avg(Feedback.rating)).where(
        col(Feedback.at) >= since)).one()
    busiest = session.exec(select(Category.name_zh, func.count()).join(Case, col(Case.category_id) == Category.id)
                           .where(col(Case.created_at) >= since).group_by(Category.name_zh)
                           .order_by(func.count().desc()).limit(top)).all()
    return CaseDigest(days=days, opened=int(opened), closed=int(closed), open_now=int(open_now),
                      overdue_now=int(overdue), ratings=int(ratings or 0),
                      rating_mean=round(float(mean), 2) if mean is not None else None,
                      top_categories=[f"{name} ({count})" for name, count in busiest])
