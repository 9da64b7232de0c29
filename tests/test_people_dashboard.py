"""Sign-in, roles and the registry pages through Streamlit's AppTest on the test database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from dashboards.access import TOKEN_KEY
from linli import auth, db
from linli.models import Grid, Resident
from linli.models.registry import AuditEntry, Role, UserAccount
from linli.patrol import CheckpointIn, create_route
from linli.settings import Settings
from tests.test_people import imported

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
PASSWORD = "correct horse"


def setup_people(settings: Settings) -> None:
    """The example community with a grid worker of XFL-G1, a manager and a viewer account."""
    with db.session_scope(db.engine_for(settings.database_url)) as session:
        imported(session)
        grid = session.exec(select(Grid).where(Grid.code == "XFL-G1")).one()
        auth.create_user(session, "gw1", PASSWORD, Role.grid_worker, staff_id=grid.grid_worker_id)
        auth.create_user(session, "mgr", PASSWORD, Role.manager)
        auth.create_user(session, "view", PASSWORD, Role.viewer)
        create_route(session, code="XFL-DAY", name="幸福里日巡", community="XFL", lead_staff_id=None,
                     checkpoints=[CheckpointIn("CP-1", "东门", "00:00", "00:01", 0)])


def signed_in(username: str) -> AppTest:
    """The app after signing in through its form."""
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.text_input(key="login_user").input(username)
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_the_dashboard_asks_for_a_login_and_refuses_a_wrong_one_vaguely(settings: Settings) -> None:
    setup_people(settings)
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "登录" and not at.metric  # nothing else is shown before signing in
    at.text_input(key="login_user").input("mgr")
    at.text_input(key="login_password").input("wrong password")
    at.button[0].click().run()
    assert at.error and "用户名或密码错误" in at.error[0].value
    with db.session_scope(db.engine_for(settings.database_url)) as session:
        account = session.exec(select(UserAccount).where(UserAccount.username == "mgr")).one()
        assert account.failed_logins == 1  # counted, so repeated failures slow down


def test_a_grid_worker_sees_only_their_grid_masked(settings: Settings) -> None:
    setup_people(settings)
    at = signed_in("gw1")
    with pytest.raises(ValueError, match="Known pages"):
        at.switch_page("views/overview.py")  # street-wide case lists are not offered to a grid worker
    at.switch_page("views/collection.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert set(table["网格"]) == {"XFL-G1"}
    assert "张**" in set(table["姓名"])
    with db.session_scope(db.engine_for(settings.database_url)) as session:
        names = set(session.exec(select(Resident.name)).all())
    text = table.to_csv()
    assert not any(name in text for name in names)
    assert "13905510001" not in text
    # A grid worker may not reveal: no reveal form on the page.
    assert not [f for f in at.get("form") if "reveal" in str(f.proto.form_id)]


def test_a_manager_reveals_with_a_reason_and_it_is_audited(settings: Settings) -> None:
    setup_people(settings)
    at = signed_in("mgr")
    at.switch_page("views/collection.py").run()
    with db.session_scope(db.engine_for(settings.database_url)) as session:
        zhang = session.exec(select(Resident).where(Resident.name == "张桂兰")).one()
    at.selectbox(key="resident").select(zhang.id).run()
    at.selectbox(key="reveal_field").select("phone")
    at.text_input(key="reveal_reason").input("电话回访核实")
    [submit] = [b for b in at.button if "reveal" in str(b.proto.form_id)]
    submit.click().run()
    assert not at.exception, at.exception
    assert any(c.value == "13905510001" for c in at.code)
    with db.session_scope(db.engine_for(settings.database_url)) as session:
        [entry] = session.exec(select(AuditEntry).where(AuditEntry.action == "reveal")).all()
    assert (entry.actor, entry.detail, entry.reason) == ("user:mgr", "phone", "电话回访核实")


def test_a_viewer_is_not_offered_the_registry_and_the_page_refuses_them_anyway(settings: Settings) -> None:
    setup_people(settings)
    at = signed_in("view")
    assert not at.exception, at.exception
    with pytest.raises(ValueError, match="Known pages") as refused:
        at.switch_page("views/collection.py")
    assert "collection.py'" not in str(refused.value).split("Known pages")[1]
    # Opened directly with a viewer's session, the page itself refuses.
    page = AppTest.from_file(str(APP.parent / "views" / "collection.py"), default_timeout=30)
    page.session_state[TOKEN_KEY] = at.session_state[TOKEN_KEY]
    page.run()
    assert page.error and "无权" in page.error[0].value and not page.dataframe


def test_the_patrol_page_shows_todays_rounds(settings: Settings) -> None:
    setup_people(settings)
    at = signed_in("mgr")
    at.switch_page("views/patrol.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["点位"]) == ["东门"] and list(table["状态"]) == ["❌ 漏巡"]
    assert at.metric[0].value == "0/1"
