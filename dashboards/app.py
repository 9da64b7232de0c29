"""Linli's dashboard for managers — `streamlit run dashboards/app.py`; zh-CN first, English one toggle away."""

from __future__ import annotations

import streamlit as st

from dashboards.texts import LANGUAGE_KEY, current_language, t
from linli.settings import get_settings

st.set_page_config(page_title="邻里 Linli", page_icon="🏘️", layout="wide")
st.sidebar.toggle(t("english", "en"), value=get_settings().language == "en", key=LANGUAGE_KEY)
lang = current_language()
st.sidebar.caption(t("app_title", lang))
pages = [
    st.Page("pages/overview.py", title=t("nav_overview", lang), icon=":material/dashboard:", default=True),
    st.Page("pages/flow_runs.py", title=t("nav_flows", lang), icon=":material/account_tree:"),
    st.Page("pages/processes.py", title=t("nav_processes", lang), icon=":material/schema:"),
    st.Page("pages/report.py", title=t("nav_report", lang), icon=":material/photo_camera:"),
    st.Page("pages/work.py", title=t("nav_work", lang), icon=":material/handyman:"),
    st.Page("pages/devices.py", title=t("nav_devices", lang), icon=":material/sensors:"),
    st.Page("pages/alarms.py", title=t("nav_alarms", lang), icon=":material/notifications_active:"),
    st.Page("pages/records.py", title=t("nav_records", lang), icon=":material/door_front:"),
    st.Page("pages/datahub.py", title=t("nav_datahub", lang), icon=":material/cloud_upload:"),
]
st.navigation(pages).run()
