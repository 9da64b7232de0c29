"""工作台: staff and volunteers claim pooled cases, accept, note progress and resolve with an after-photo."""

from __future__ import annotations

import streamlit as st
from sqlmodel import col, select

from dashboards.access import open_page
from dashboards.texts import t
from linli import db
from linli.errors import LinliError
from linli.loop import LoopConfig
from linli.loop.publish import publish_result
from linli.loop.work import accept, claim, parse_actor, progress, resolve
from linli.models import Case, CaseRouting, CaseStatus, Category, Volunteer, utcnow
from linli.settings import get_settings
from linli.storage import make_store

settings = get_settings()
lang = open_page("work_title", "work_cases")  # roles, once accounts exist

actor = st.text_input(t("work_actor", lang), key="actor").strip()
if not actor:
    st.stop()
try:
    kind, actor_id = parse_actor(actor)
except LinliError as err:
    st.error(err.message)
    st.caption(t("error_hint", lang, hint=err.hint))
    st.stop()

OPEN = [CaseStatus.dispatched, CaseStatus.in_progress]
with db.session_scope() as session:
    if kind == "staff":
        mine = session.exec(select(Case).where(Case.assignee_id == actor_id, col(Case.status).in_(OPEN))
                            .order_by(col(Case.id))).all()
        pool: list[Case] = []
    else:
        mine = session.exec(select(Case).join(CaseRouting, col(CaseRouting.case_id) == Case.id)
                            .where(CaseRouting.volunteer_id == actor_id, col(Case.assignee_id).is_(None),
                                   col(Case.status).in_(OPEN)).order_by(col(Case.id))).all()
        volunteer = session.get(Volunteer, actor_id)
        skills = {s.strip() for s in volunteer.skills.split(",")} if volunteer else set()
        offered = session.exec(select(Case, CaseRouting).join(CaseRouting, col(CaseRouting.case_id) == Case.id)
                               .where(CaseRouting.route == "volunteer_pool", col(CaseRouting.volunteer_id).is_(None),
                                      col(CaseRouting.pool_until) > utcnow(), Case.status == CaseStatus.dispatched)
                               .order_by(col(Case.id))).all()
        codes = {c.id: c.code for c in session.exec(select(Category)).all()}
        pool = [c for c, _r in offered if volunteer and c.community_id == volunteer.community_id
                and codes.get(c.category_id) in skills]


def table(cases: list[Case]) -> None:
    """A short list of cases."""
    if not cases:
        st.info(t("work_nothing", lang))
        return
    st.dataframe([{"#": c.number, "status": str(c.status), "text": c.description[:60]} for c in cases],
                 hide_index=True)


def act(step: object) -> None:
    """Run a work step in one unit of work; show the outcome or the error with its hint."""
    try:
        with db.session_scope() as session:
            result = step(session)  # type: ignore[operator]
        publish_result(result, settings)
        st.success(t("work_done", lang, number=result.case_number, status=result.status))
    except LinliError as err:
        st.error(err.message)
        if err.hint:
            st.caption(t("error_hint", lang, hint=err.hint))


if kind == "volunteer":
    st.subheader(t("work_pool", lang))
    table(pool)
    if pool:
        pick = st.selectbox(t("work_case", lang), [c.number for c in pool], key="pool_case")
        if st.button(t("work_claim", lang), key="claim"):
            act(lambda s: claim(s, pick, volunteer_id=actor_id, config=LoopConfig.from_settings(settings)))

st.subheader(t("work_mine", lang))
table(list(mine))
if mine:
    number = st.selectbox(t("work_case", lang), [c.number for c in mine], key="my_case")
    cols = st.columns(3)
    if cols[0].button(t("work_accept", lang), key="accept"):
        act(lambda s: accept(s, number, actor=actor))
    note = st.text_input(t("work_note", lang), key="note")
    if cols[1].button(t("work_progress", lang), key="progress"):
        act(lambda s: progress(s, number, actor=actor, note=note))
    photo = st.file_uploader(t("work_after_photo", lang), type=["jpg", "jpeg", "png", "webp"], key="after")
    if cols[2].button(t("work_resolve", lang), key="resolve"):
        act(lambda s: resolve(s, number, actor=actor, note=note, store=make_store(settings),
                              photo=photo.getvalue() if photo else None,
                              max_photo_bytes=settings.storage.max_photo_bytes))
