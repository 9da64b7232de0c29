"""The dashboard's KPIs on real databases, with cases built through the models and the state machine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from linli import kpi
from linli.errors import NotFound
from linli.models import Case, CaseEvent, CaseStatus, Category, Community, Feedback, Staff
from linli.seed import seed_sample
from linli.statemachine import record, transition

S = CaseStatus
TZ = "Asia/Shanghai"
NOW = datetime(2025, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai; local midnight is 03-09 16:00 UTC
MIDNIGHT = datetime(2025, 3, 9, 16, 0, tzinfo=UTC)

PATHS: dict[CaseStatus, list[CaseStatus]] = {
    S.reported: [],
    S.dispatched: [S.assessing, S.dispatched],
    S.in_progress: [S.assessing, S.dispatched, S.in_progress],
    S.resolved: [S.assessing, S.dispatched, S.in_progress, S.resolved],
    S.closed: [S.assessing, S.dispatched, S.in_progress, S.resolved, S.closed],
    S.reopened: [S.assessing, S.dispatched, S.in_progress, S.resolved, S.reopened],
    S.rejected: [S.assessing, S.rejected],
}


@dataclass
class World:
    """The seeded places and people the cases refer to."""

    c1: Community
    c2: Community
    repair: Category
    sanitation: Category
    handler: Staff


def make_case(
    session: Session, world: World, number: str, status: CaseStatus, *, created: datetime,
    community: Community | None = None, category: Category | None = None, due: datetime | None = None,
    closed: datetime | None = None, reporter: str = "王建国",
) -> Case:
    """A case walked to `status` by the state machine, with the timestamps the test controls."""
    case = Case(
        number=number, community_id=(community or world.c1).id, category_id=(category or world.repair).id,
        description="秋千坏了", reporter_name=reporter, created_at=created, due_at=due,
        assignee_id=world.handler.id if status != S.reported else None,
    )
    session.add(case)
    session.flush()
    for target in PATHS[status]:
        transition(session, case, target, actor="test")
    if closed is not None:
        case.closed_at = closed
    session.add(case)
    session.flush()
    return case


def rate(session: Session, case: Case, rating: int, at: datetime) -> None:
    """The reporter's rating of `case` at a given time."""
    session.add(Feedback(case_id=case.id, rating=rating, by="resident:1", at=at))


@pytest.fixture
def world(session: Session) -> World:
    """The sample street office."""
    seed_sample(session)
    session.commit()
    c1, c2 = session.exec(select(Community).order_by(Community.code.desc())).all()  # XFL, HPY
    repair = session.exec(select(Category).where(Category.code == "facility_repair")).one()
    sanitation = session.exec(select(Category).where(Category.code == "sanitation")).one()
    handler = session.exec(select(Staff).where(Staff.community_id == c1.id)).first()
    assert handler is not None
    return World(c1=c1, c2=c2, repair=repair, sanitation=sanitation, handler=handler)


@pytest.fixture
def cases(session: Session, world: World) -> dict[str, Case]:
    """A day of cases around Shanghai's midnight, closed ones with known handling times and ratings."""
    h = timedelta(hours=1)
    made = {
        # open
        "A": make_case(session, world, "A", S.reported, created=MIDNIGHT - timedelta(minutes=1), due=NOW - h,
                       reporter="李秀英"),
        "B": make_case(session, world, "B", S.dispatched, created=MIDNIGHT, due=NOW + h, category=world.sanitation),
        "C": make_case(session, world, "C", S.in_progress, created=NOW - h, community=world.c2),
        "K": make_case(session, world, "K", S.reopened, created=NOW - timedelta(days=5), due=NOW - 2 * h),
        # not open
        "I": make_case(session, world, "I", S.resolved, created=NOW - timedelta(days=4), due=NOW - 3 * h),
        "J": make_case(session, world, "J", S.rejected, created=NOW - timedelta(days=6)),
        # closed: handling hours 63 (today), 229 (yesterday), 10, 20 (in the window), 120 (before it)
        "D": make_case(session, world, "D", S.closed, created=NOW - 72 * h, closed=MIDNIGHT + h),
        "E": make_case(session, world, "E", S.closed, created=MIDNIGHT - h - 229 * h, closed=MIDNIGHT - h),
        "G": make_case(session, world, "G", S.closed, created=NOW - 58 * h, closed=NOW - 48 * h),
        "H": make_case(session, world, "H", S.closed, created=NOW - 44 * h, closed=NOW - 24 * h,
                       community=world.c2),
        "F": make_case(session, world, "F", S.closed, created=NOW - timedelta(days=40),
                       closed=NOW - timedelta(days=35)),
    }
    rate(session, made["D"], 5, NOW - h)
    rate(session, made["E"], 3, NOW - 48 * h)
    rate(session, made["G"], 4, NOW - 47 * h)
    rate(session, made["H"], 2, NOW - 23 * h)
    rate(session, made["F"], 1, NOW - timedelta(days=35))  # outside the 30-day window
    session.commit()
    return made


def test_overview_counts_every_kpi(session: Session, cases: dict[str, Case]) -> None:
    result = kpi.overview(session=session, now=NOW, tz=TZ)
    assert result.open == 4  # A, B, C, K (reopened counts as open)
    assert result.new_today == 2  # B at local midnight and C; A one minute before midnight is yesterday
    assert result.closed_today == 1  # D; E closed one hour before local midnight
    assert result.overdue == 2  # A and K; I is overdue on paper but resolved, so not open
    assert result.median_handling_hours == pytest.approx((20 + 63) / 2)  # 10, 20, 63, 229 (F too old)
    assert result.satisfaction_mean == pytest.approx((5 + 3 + 4 + 2) / 4)
    assert result.satisfaction_share == pytest.approx(2 / 4)
    assert result.ratings == 4
    assert result.by_status == {
        "reported": 1, "assessing": 0, "dispatched": 1, "in_progress": 1, "reopened": 1, "resolved": 1,
        "closed": 5, "merged": 0, "rejected": 1,
    }
    assert result.total == 11


def test_overview_for_one_community(session: Session, cases: dict[str, Case], world: World) -> None:
    one = kpi.overview(session=session, now=NOW, tz=TZ, community_id=world.c1.id)
    assert (one.open, one.new_today, one.closed_today, one.overdue) == (3, 1, 1, 2)
    assert one.median_handling_hours == pytest.approx(63)  # 10, 63, 229
    assert one.satisfaction_mean == pytest.approx(4.0)
    assert one.satisfaction_share == pytest.approx(2 / 3)
    two = kpi.overview(session=session, now=NOW, tz=TZ, community_id=world.c2.id)
    assert (two.open, two.new_today, two.closed_today, two.overdue) == (1, 1, 0, 0)
    assert two.median_handling_hours == pytest.approx(20)
    assert (two.satisfaction_mean, two.satisfaction_share, two.ratings) == (2.0, 0.0, 1)


def test_new_today_follows_the_local_midnight(session: Session, cases: dict[str, Case]) -> None:
    just_before = MIDNIGHT - timedelta(seconds=1)  # 23:59:59 in Shanghai, 15:59:59 UTC
    before = kpi.overview(session=session, now=just_before, tz=TZ)
    assert before.new_today == 1  # only A (created 23:59); B and C belong to the next local day
    assert before.closed_today == 2  # E (23:00) and H (10:00) closed that day; D the next day
    assert kpi.overview(session=session, now=MIDNIGHT, tz=TZ).new_today == 2  # B created at 00:00 sharp
    # The same instant in UTC has another "today": A and B were created on 03-09 UTC, C on 03-10.
    in_utc = kpi.overview(session=session, now=NOW, tz="UTC")
    assert (in_utc.new_today, in_utc.closed_today) == (1, 0)
    assert kpi.local_day(NOW, TZ) == (MIDNIGHT, MIDNIGHT + timedelta(days=1))


def test_overview_of_an_empty_database(session: Session, world: World) -> None:
    result = kpi.overview(session=session, now=NOW, tz=TZ)
    assert (result.open, result.new_today, result.closed_today, result.overdue, result.total) == (0, 0, 0, 0, 0)
    assert result.median_handling_hours is None
    assert result.satisfaction_mean is None and result.satisfaction_share is None and result.ratings == 0


def test_list_cases_filters_and_masks(session: Session, cases: dict[str, Case], world: World) -> None:
    everything = kpi.list_cases(session=session, now=NOW)
    assert len(everything) == 11
    assert [row.number for row in everything][:3] == ["C", "B", "A"]  # newest first
    a = next(row for row in everything if row.number == "A")
    assert (a.status, a.overdue, a.reporter, a.assignee) == ("reported", True, "李**", "")
    assert (a.category_zh, a.category_en, a.community) == ("设施报修", "Facility repair", "幸福里社区")
    b = next(row for row in everything if row.number == "B")
    assert b.assignee == world.handler.name[0] + "*" * min(len(world.handler.name) - 1, 3)
    assert b.reporter == "王**" and not b.overdue

    def numbers(**filters: object) -> list[str]:
        return sorted(row.number for row in kpi.list_cases(session=session, now=NOW, **filters))  # type: ignore[arg-type]

    assert numbers(status=["reported", "reopened"]) == ["A", "K"]
    assert numbers(community_id=world.c2.id) == ["C", "H"]
    assert numbers(category_id=world.sanitation.id) == ["B"]
    assert numbers(overdue_only=True) == ["A", "K"]
    assert numbers(overdue_only=True, community_id=world.c2.id) == []
    assert len(kpi.list_cases(session=session, now=NOW, limit=4)) == 4
    assert [r.number for r in kpi.list_cases(session=session, now=NOW, limit=2, offset=1)] == ["B", "A"]


def test_case_timeline_is_in_order(session: Session, cases: dict[str, Case]) -> None:
    case = cases["D"]
    early = record(session, case, actor="flow:intake", action="notified", reason="回执已发送")
    early.at = case.created_at  # written last, happened first
    session.commit()
    timeline = kpi.case_timeline(session=session, case_number="D")
    assert [row.action for row in timeline] == ["notified"] + ["transition"] * 5
    assert [row.to_status for row in timeline[1:]] == ["assessing", "dispatched", "in_progress", "resolved",
                                                      "closed"]
    assert timeline[1].from_status == "reported" and timeline[0].from_status is None
    assert timeline[0].reason == "回执已发送" and timeline[0].actor == "flow:intake"
    assert [row.at for row in timeline] == sorted(row.at for row in timeline)
    stored = session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()
    assert len(stored) == len(timeline)


def test_case_timeline_of_an_unknown_number(session: Session, world: World) -> None:
    with pytest.raises(NotFound, match="NOPE"):
        kpi.case_timeline(session=session, case_number="NOPE")


def test_filters_list_communities_and_categories(session: Session, world: World) -> None:
    assert [c.name for c in kpi.communities(session=session)] == ["和平苑社区", "幸福里社区"]
    names = {c.code: (c.name_zh, c.name_en) for c in kpi.categories(session=session)}
    assert names["sanitation"] == ("环境卫生", "Environment & sanitation")
