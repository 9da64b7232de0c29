"""Read-only queries behind the managers' dashboard: KPIs, the case list and a case's timeline.

Every function takes a keyword-only `session` and returns plain dataclasses, so a page never
writes SQL. The overview stays two aggregate statements over `case` and `feedback` (plus, on
SQLite only, one narrow read of the last 30 days' closed cases for the median), because the
performance budget wants it under a second with a million cases.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, extract, func
from sqlmodel import Session, col, select

from linli.errors import NotFound
from linli.models import Case, CaseEvent, CaseStatus, Category, Community, Feedback, Staff, utcnow
from linli.privacy import mask_name
from linli.statemachine import OPEN_STATUSES

WINDOW = timedelta(days=30)  # how far back the median handling time and satisfaction look
GOOD_RATING = 4  # a rating at or above this counts as satisfied in `satisfaction_share`

# The order a manager reads statuses in: the closed loop, then its side exits.
STATUS_ORDER: tuple[CaseStatus, ...] = (
    CaseStatus.reported, CaseStatus.assessing, CaseStatus.dispatched, CaseStatus.in_progress,
    CaseStatus.reopened, CaseStatus.resolved, CaseStatus.closed, CaseStatus.merged, CaseStatus.rejected,
)


@dataclass(frozen=True)
class Overview:
    """The headline numbers of the overview page, for one community or all of them."""

    open: int
    new_today: int
    closed_today: int
    overdue: int
    median_handling_hours: float | None
    satisfaction_mean: float | None
    satisfaction_share: float | None
    ratings: int
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All cases, whatever their status."""
        return sum(self.by_status.values())


@dataclass(frozen=True)
class CaseRow:
    """One line of the case list; personal names are masked."""

    number: str
    status: str
    category_zh: str
    category_en: str
    community: str
    created_at: datetime
    due_at: datetime | None
    overdue: bool
    escalation_level: int
    priority: int
    assignee: str
    reporter: str


@dataclass(frozen=True)
class TimelineRow:
    """One line of a case's timeline."""

    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str


@dataclass(frozen=True)
class CommunityRow:
    """A community to filter by."""

    id: int
    code: str
    name: str


@dataclass(frozen=True)
class CategoryRow:
    """A category to filter by."""

    id: int
    code: str
    name_zh: str
    name_en: str


def local_day(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """The start and end of `now`'s calendar day in time zone `tz`, as aware UTC datetimes."""
    zone = ZoneInfo(tz)
    day = now.astimezone(zone).date()
    start = datetime.combine(day, time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)  # 23 or 25 hours away across DST
    return start.astimezone(UTC), end.astimezone(UTC)


def _is_overdue(now: datetime) -> ColumnElement[bool]:
    return col(Case.status).in_(OPEN_STATUSES) & col(Case.due_at).is_not(None) & (col(Case.due_at) < now)


def overview(*, session: Session, now: datetime, tz: str, community_id: int | None = None) -> Overview:
    """Open, new today, closed today, overdue, median handling time, satisfaction and counts by status."""
    day_start, day_end = local_day(now, tz)
    since = now - WINDOW
    created, closed = col(Case.created_at), col(Case.closed_at)
    in_window = closed.is_not(None) & (closed >= since)
    mine: list[ColumnElement[bool]] = [col(Case.community_id) == community_id] if community_id is not None else []

    # Statement 1: one pass over the cases, grouped by status.
    columns: list[Any] = [
        col(Case.status), func.count(),
        func.count().filter((created >= day_start) & (created < day_end)),
        func.count().filter(closed.is_not(None) & (closed >= day_start) & (closed < day_end)),
        func.count().filter(_is_overdue(now)),
    ]
    counts = select(*columns).where(*mine).group_by(col(Case.status))
    by_status = {status.value: 0 for status in STATUS_ORDER}
    new_today = closed_today = overdue = 0
    for status, total, new, closed_now, late in session.exec(counts):
        by_status[CaseStatus(status).value] = int(total)
        new_today, closed_today, overdue = new_today + new, closed_today + closed_now, overdue + late

    # Statement 2: satisfaction over the window and, on PostgreSQL, the median through the closed_at index.
    rating = col(Feedback.rating)
    columns = [func.count(), func.avg(rating), func.count().filter(rating >= GOOD_RATING)]
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        seconds = func.percentile_cont(0.5).within_group(extract("epoch", closed - created))
        columns.append(select(seconds).select_from(Case).where(in_window, *mine).correlate(None).scalar_subquery())
    stats = select(*columns).select_from(Feedback).where(col(Feedback.at) >= since)
    if community_id is not None:
        stats = stats.join(Case, col(Case.id) == col(Feedback.case_id)).where(*mine)
    row = session.exec(stats).one()
    rated, mean, good = int(row[0]), row[1], int(row[2])
    if postgres:
        median = None if row[3] is None else float(row[3]) / 3600
    else:
        median = _median_hours_sqlite(session, in_window, mine)
    return Overview(
        open=sum(by_status[s.value] for s in OPEN_STATUSES),
        new_today=new_today,
        closed_today=closed_today,
        overdue=overdue,
        median_handling_hours=median,
        satisfaction_mean=float(mean) if rated else None,
        satisfaction_share=good / rated if rated else None,
        ratings=rated,
        by_status=by_status,
    )


def _median_hours_sqlite(
    session: Session, in_window: ColumnElement[bool], mine: list[ColumnElement[bool]]
) -> float | None:
    # SQLite has no percentile function: read only the durations (in days) and take the median here.
    days = func.julianday(col(Case.closed_at)) - func.julianday(col(Case.created_at))
    values = [float(v) for v in session.exec(select(days).where(in_window, *mine)).all() if v is not None]
    return statistics.median(values) * 24 if values else None


def list_cases(
    *,
    session: Session,
    status: list[str] | None = None,
    community_id: int | None = None,
    category_id: int | None = None,
    overdue_only: bool = False,
    limit: int = 200,
    offset: int = 0,
    now: datetime | None = None,
) -> list[CaseRow]:
    """Cases newest first, filtered; assignee and reporter names come masked."""
    now = now or utcnow()
    query = (
        select(Case, Category, Community, Staff)
        .join(Category, col(Category.id) == col(Case.category_id))
        .join(Community, col(Community.id) == col(Case.community_id))
        .outerjoin(Staff, col(Staff.id) == col(Case.assignee_id))
    )
    if status:
        query = query.where(col(Case.status).in_([CaseStatus(s) for s in status]))
    if community_id is not None:
        query = query.where(Case.community_id == community_id)
    if category_id is not None:
        query = query.where(Case.category_id == category_id)
    if overdue_only:
        query = query.where(_is_overdue(now))
    query = query.order_by(col(Case.created_at).desc(), col(Case.id).desc()).limit(limit).offset(offset)
    return [
        CaseRow(
            number=case.number, status=CaseStatus(case.status).value, category_zh=category.name_zh,
            category_en=category.name_en, community=community.name, created_at=case.created_at,
            due_at=case.due_at,
            overdue=case.status in OPEN_STATUSES and case.due_at is not None and case.due_at < now,
            escalation_level=case.escalation_level, priority=case.priority,
            assignee=mask_name(staff.name if staff else ""), reporter=mask_name(case.reporter_name),
        )
        for case, category, community, staff in session.exec(query)
    ]


def case_timeline(*, session: Session, case_number: str) -> list[TimelineRow]:
    """Every line of a case's timeline, oldest first; NotFound for an unknown number."""
    case_id = session.exec(select(Case.id).where(Case.number == case_number)).first()
    if case_id is None:
        raise NotFound(f"no case numbered {case_number!r}", hint="check the number in the case list")
    events = session.exec(
        select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(col(CaseEvent.at), col(CaseEvent.id))
    ).all()
    return [
        TimelineRow(
            at=e.at, actor=e.actor, action=e.action,
            from_status=CaseStatus(e.from_status).value if e.from_status else None,
            to_status=CaseStatus(e.to_status).value if e.to_status else None,
            reason=e.reason,
        )
        for e in events
    ]


def communities(*, session: Session) -> list[CommunityRow]:
    """Every community, by code, for the dashboard's filter."""
    rows = session.exec(select(Community).order_by(Community.code)).all()
    return [CommunityRow(id=c.id or 0, code=c.code, name=c.name) for c in rows]


def categories(*, session: Session) -> list[CategoryRow]:
    """Every case category, by code, for the dashboard's filter."""
    rows = session.exec(select(Category).order_by(Category.code)).all()
    return [CategoryRow(id=c.id or 0, code=c.code, name_zh=c.name_zh, name_en=c.name_en) for c in rows]
