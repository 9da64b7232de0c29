"""The overview page through Streamlit's AppTest, reading the test database through linli.kpi."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from linli import db, kpi
from linli.models import Case, CaseStatus, Category, Community, Feedback, Staff, utcnow
from linli.seed import seed_sample
from linli.settings import Settings
from linli.statemachine import transition

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
S = CaseStatus


def populate(url: str) -> None:
    """The sample street office with three cases: overdue and open, in progress, and closed and rated."""
    now = utcnow()
    with db.session_scope(db.engine_for(url)) as session:
        seed_sample(session)
        session.flush()
        community = session.exec(select(Community).where(Community.code == "XFL")).one()
        category = session.exec(select(Category).where(Category.code == "facility_repair")).one()
        handler = session.exec(select(Staff).where(Staff.community_id == community.id)).first()
        assert handler is not None

        def make(number: str, path: list[CaseStatus], created_hours_ago: float, **fields: object) -> Case:
            case = Case(number=number, community_id=community.id, category_id=category.id, description="秋千坏了",
                        reporter_name="王建国", created_at=now - timedelta(hours=created_hours_ago), **fields)
            session.add(case)
            session.flush()
            for target in path:
                transition(session, case, target, actor="flow:test", reason=f"to {target}")
            return case

        make("LL-001", [], 0.1, due_at=now - timedelta(minutes=5))
        make("LL-002", [S.assessing, S.dispatched, S.in_progress], 0.2, assignee_id=handler.id,
             due_at=now + timedelta(hours=4))
        closed = make("LL-003", [S.assessing, S.dispatched, S.in_progress, S.resolved, S.closed], 0.3,
                      assignee_id=handler.id)
        closed.closed_at = now
        session.add(Feedback(case_id=closed.id, rating=5, by="resident:1", at=now))


@pytest.fixture
def cases(settings: Settings) -> dict[str, object]:
    """The three cases of `populate` and the KPIs the page should show for them."""
    populate(settings.database_url)
    with db.session_scope(db.engine_for(settings.database_url)) as session:
        expected = kpi.overview(session=session, now=utcnow(), tz=settings.timezone)
    return {"expected": expected}


def metrics(at: AppTest) -> dict[str, str]:
    """Metric label → shown value."""
    return {m.label: m.value for m in at.metric}


def test_overview_shows_the_kpis_in_chinese(cases: dict[str, object]) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["在办案件"] == "2"
    assert shown["今日新增"] == str(cases["expected"].new_today)  # type: ignore[attr-defined]
    assert shown["今日结案"] == "1"
    assert shown["已超期"] == "1"
    assert shown["平均评分"] == "5.00 / 5"
    assert shown["满意率（≥4 分）"] == "100%"
    assert shown["办理时长中位数"] == "18 分钟"  # created 0.3 h before closing: under an hour shows minutes
    listed = at.dataframe[0].value
    assert sorted(listed["编号"]) == ["LL-001", "LL-002", "LL-003"]
    assert set(listed["上报人"]) == {"王**"}  # never the full name
    assert "王建国" not in listed.to_csv()
    assert list(listed.loc[listed["编号"] == "LL-001", "超期"]) == ["⚠️"]


def test_english_toggle_switches_the_labels(cases: dict[str, object]) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.toggle(key="english").set_value(True).run()
    assert not at.exception
    shown = metrics(at)
    assert shown["Open cases"] == "2" and shown["Overdue"] == "1"
    assert "在办案件" not in shown
    assert "Number" in at.dataframe[0].value.columns
    # AppTest drops the sidebar from its tree on reruns under st.navigation, so switch back by state.
    at.session_state["english"] = False
    at.run()
    assert "在办案件" in metrics(at)


def test_filters_narrow_the_case_list(cases: dict[str, object], settings: Settings) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.toggle(key="overdue_only").set_value(True).run()
    assert list(at.dataframe[0].value["编号"]) == ["LL-001"]
    at.toggle(key="overdue_only").set_value(False)
    at.multiselect(key="statuses").select("closed").run()
    assert list(at.dataframe[0].value["编号"]) == ["LL-003"]
    with db.session_scope(db.engine_for(settings.database_url)) as session:
        other = next(c.id for c in kpi.communities(session=session) if c.code == "HPY")
    at.selectbox(key="community").set_value(other).run()  # the cases are all in 幸福里, none in 和平苑
    assert metrics(at)["在办案件"] == "0"
    assert any("没有符合条件的案件" in info.value for info in at.info)


def test_picking_a_case_shows_its_timeline(cases: dict[str, object]) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert len(at.dataframe) == 1  # no case picked yet
    at.selectbox(key="case").select("LL-003").run()
    assert not at.exception
    timeline = at.dataframe[1].value
    assert list(timeline["新状态"]) == ["研判中", "已派单", "处置中", "已处置待评价", "已结案"]
    assert list(timeline["原状态"])[0] == "已上报"
    assert set(timeline["操作者"]) == {"flow:test"}


def test_an_empty_database_shows_dashes(settings: Settings) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    shown = metrics(at)
    assert shown["在办案件"] == "0" and shown["办理时长中位数"] == "—" and shown["平均评分"] == "—"
    assert any("没有符合条件的案件" in info.value for info in at.info)
