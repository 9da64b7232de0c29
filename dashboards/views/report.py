"""随手拍: a resident (or a grid worker on their behalf) reports a problem and follows its progress."""

from __future__ import annotations

import streamlit as st
from sqlmodel import col, select

from dashboards.access import open_page
from dashboards.texts import local_time, t
from linli import db
from linli.errors import LinliError
from linli.loop import LoopConfig
from linli.loop.common import get_case
from linli.loop.intake import file_report, parse_report
from linli.loop.publish import publish_result
from linli.models import Building, CaseEvent, CaseSource, Category
from linli.notify import ESCALATION_LABELS, STATUS_LABELS
from linli.settings import Language, get_settings
from linli.storage import make_store

settings = get_settings()
lang = open_page("report_title", "file_on_behalf")  # roles, once accounts exist


def show_error(err: LinliError) -> None:
    """What went wrong and what to do, in the page."""
    st.error(err.message)
    if err.hint:
        st.caption(t("error_hint", lang, hint=err.hint))


with db.session_scope() as session:
    categories = {c.code: (c.name_zh if lang == "zh" else c.name_en)
                  for c in session.exec(select(Category).order_by(Category.id)).all()}
    buildings = {b.code: b.name for b in session.exec(select(Building).order_by(Building.code)).all()}

with st.form("report", clear_on_submit=False):
    text = st.text_area(t("report_text", lang), key="text", max_chars=2000)
    category = st.selectbox(t("report_category", lang), [""] + list(categories), key="category",
                            format_func=lambda c: categories.get(c) or t("report_category_auto", lang))
    photo = st.file_uploader(t("report_photo", lang), type=["jpg", "jpeg", "png", "webp"], key="photo")
    where = st.radio(t("report_where", lang), ["building", "point"], key="where", horizontal=True,
                     format_func=lambda w: t(f"report_where_{w}", lang))
    building = st.selectbox(t("report_building", lang), list(buildings), key="building",
                            format_func=lambda b: f"{b} · {buildings[b]}")
    cols = st.columns(2)
    lat = cols[0].number_input(t("report_lat", lang), value=31.771, format="%.6f", key="lat")
    lon = cols[1].number_input(t("report_lon", lang), value=117.281, format="%.6f", key="lon")
    reporter = st.number_input(t("report_reporter", lang), min_value=0, step=1, value=0, key="reporter")
    behalf = st.checkbox(t("report_behalf", lang), key="behalf")
    submitted = st.form_submit_button(t("report_submit", lang))

if submitted:
    data: dict[str, object] = {"description": text, "source": CaseSource.grid_worker if behalf else CaseSource.resident}
    if category:
        data["category"] = category
    if where == "building":
        data["building"] = building
    else:
        data["lat"], data["lon"] = lat, lon
    if reporter:
        data["reporter_id"] = int(reporter)
    try:
        report = parse_report(data)
        with db.session_scope() as session:
            result = file_report(session, report, config=LoopConfig.from_settings(settings),
                                 store=make_store(settings), photo=photo.getvalue() if photo else None,
                                 max_photo_bytes=settings.storage.max_photo_bytes)
        publish_result(result, settings)
        st.session_state["number"] = result.case_number  # the follow box below shows the new case
        st.success(t("report_done", lang, number=result.case_number))
    except LinliError as err:
        show_error(err)

st.subheader(t("report_follow", lang))
number = st.text_input(t("report_number", lang), key="number")
if number:
    try:
        with db.session_scope() as session:
            case = get_case(session, number.strip())
            events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                  .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
        language = Language(lang)
        st.info(t("report_status", lang, status=STATUS_LABELS[case.status][language],
                  level=ESCALATION_LABELS.get(case.escalation_level, ESCALATION_LABELS[2])[language]))
        st.dataframe([{t("col_at", lang): local_time(e.at, settings.timezone), t("col_action", lang): e.action,
                       t("col_reason", lang): e.reason} for e in events], hide_index=True)
    except LinliError as err:
        show_error(err)
