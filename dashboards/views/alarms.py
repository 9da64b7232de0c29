"""Alarms: the open ones, most recent first; acknowledge and clear with who did it; a snapshot when there is one."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboards.access import open_page
from dashboards.texts import local_time, t
from linli import db
from linli.devices import alarms as alarm_steps
from linli.devices import views
from linli.errors import LinliError
from linli.settings import get_settings
from linli.storage import make_store

REFRESH = timedelta(seconds=5)
tz = get_settings().timezone
lang = open_page("alarms_title", "view_devices")  # roles, once accounts exist


@st.fragment(run_every=REFRESH)
def open_alarms() -> None:
    """The open alarms, refreshed while the page is open."""
    with db.session_scope() as session:
        rows = views.alarm_rows(session=session, language=lang)
    if not rows:
        st.info(t("no_alarms", lang))
        return
    st.dataframe([{"id": r.id, t("dv_alarm", lang): r.name, t("dv_severity", lang): t(f"severity.{r.severity}", lang),
                   t("dv_state", lang): t(f"alarm.{r.status}", lang), t("dv_device", lang): r.device,
                   t("dv_place", lang): r.place, t("dv_count", lang): r.count,
                   t("dv_first", lang): local_time(r.first_at, tz), t("dv_last", lang): local_time(r.last_at, tz),
                   t("dv_detail", lang): r.message, t("dv_case", lang): r.case_id or ""} for r in rows],
                 hide_index=True)


open_alarms()
with db.session_scope() as session:
    choices = {r.id: r for r in views.alarm_rows(session=session, language=lang)}
if choices:
    picked = st.selectbox(t("alarm_pick", lang), list(choices), index=None, key="alarm",
                          format_func=lambda i: f"#{i} {choices[i].name} · {choices[i].device}")
    who = st.text_input(t("alarm_who", lang), key="alarm_who", value="staff:")
    left, right = st.columns(2)
    acked, cleared = left.button(t("alarm_ack", lang), key="ack"), right.button(t("alarm_clear", lang), key="clear")
    step = "acknowledge" if acked else ("clear" if cleared else None)
    if picked is not None and step:
        try:
            with db.session_scope() as session:
                done = getattr(alarm_steps, step)(session, picked, by=who.strip() or "dashboard")
            st.success(t("alarm_done", lang, id=picked, what=t(f"alarm.{done.status}", lang)))
        except LinliError as err:
            st.error(str(err))
    if picked is not None and choices[picked].snapshot_key:
        st.image(make_store(get_settings()).url(choices[picked].snapshot_key), caption=t("alarm_snapshot", lang),
                 width=320)
