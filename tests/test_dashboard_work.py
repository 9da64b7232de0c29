"""The report (随手拍) and work pages through Streamlit's AppTest, on the test database."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest

from linli.loop.assess import assess, receive
from linli.loop.dispatch import dispatch
from linli.models import Case, CaseRouting, CaseSource, CaseStatus, Volunteer
from linli.settings import Settings
from tests.factories import CONFIG, a_case, seeded

PAGES = Path(__file__).resolve().parents[1] / "dashboards" / "views"


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / name), default_timeout=30).run()


def test_a_resident_reports_sees_the_case_number_and_follows_it(settings: Settings, session: Session) -> None:
    seeded(session)
    at = _page("report.py")
    assert not at.exception, at.exception
    at.text_area(key="text").input("5栋门口路灯坏了")
    at.selectbox(key="building").set_value("XFL-B2")
    at.checkbox(key="behalf").check()
    at.button[0].click().run()
    assert not at.exception, at.exception
    case = session.exec(select(Case)).one()
    assert case.source == CaseSource.grid_worker and case.building_id is not None
    assert any(case.number in s.value for s in at.success)
    assert at.text_input(key="number").value == case.number
    assert any("已上报" in i.value for i in at.info)  # progress shown right away
    assert list(at.dataframe[0].value["动作"]) == ["reported"]


def test_an_empty_report_is_refused_on_the_page_and_nothing_is_written(settings: Settings, session: Session) -> None:
    seeded(session)
    at = _page("report.py")
    at.button[0].click().run()
    assert not at.exception
    assert any("bad report" in e.value and "description" in e.value for e in at.error)
    assert session.exec(select(Case)).all() == []


def test_a_volunteer_claims_accepts_and_resolves_on_the_work_page(settings: Settings, session: Session) -> None:
    seeded(session)
    case = a_case(session, text="楼下垃圾没人清", category="sanitation")
    for step in (receive, assess, dispatch):
        step(session, case.id, config=CONFIG)
        session.commit()
    routing = session.exec(select(CaseRouting).where(CaseRouting.case_id == case.id)).one()
    assert routing.route == "volunteer_pool"
    volunteer = next(v for v in session.exec(select(Volunteer).where(Volunteer.community_id == case.community_id))
                     if "sanitation" in v.skills)
    at = _page("work.py")
    at.text_input(key="actor").input(f"volunteer:{volunteer.id}").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="pool_case").value == case.number
    at.button(key="claim").click().run()
    assert any("→ dispatched" in s.value for s in at.success)
    at = _page("work.py")
    at.text_input(key="actor").input(f"volunteer:{volunteer.id}").run()
    assert at.selectbox(key="my_case").value == case.number
    at.button(key="accept").click().run()
    at.text_input(key="note").input("已清理一半")
    at.button(key="progress").click().run()
    at.button(key="resolve").click().run()
    assert not at.exception, at.exception
    session.expire_all()
    assert session.get(Case, case.id).status == CaseStatus.resolved  # type: ignore[union-attr]


def test_the_work_page_refuses_acting_on_someone_elses_case(settings: Settings, session: Session) -> None:
    seeded(session)
    case = a_case(session)
    for step in (receive, assess, dispatch):
        step(session, case.id, config=CONFIG)
        session.commit()
    at = _page("work.py")
    at.text_input(key="actor").input("someone").run()
    assert any("bad actor" in e.value for e in at.error)
    at.text_input(key="actor").input(f"staff:{case.assignee_id}").run()
    assert at.selectbox(key="my_case").value == case.number
    at.text_input(key="note").input("去看了")
    at.button(key="progress").click().run()  # not accepted yet
    assert any("not in progress" in e.value for e in at.error)
    session.expire_all()
    assert session.get(Case, case.id).status == CaseStatus.dispatched  # type: ignore[union-attr]
