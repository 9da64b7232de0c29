"""Linli's dashboard for managers — `streamlit run dashboards/app.py`; zh-CN first, English one toggle away."""

from __future__ import annotations

import streamlit as st

from dashboards.access import accounts_exist, current_user, login_page, sign_out
from dashboards.texts import LANGUAGE_KEY, current_language, t
from linli.auth import allowed
from linli.settings import get_settings

st.set_page_config(page_title="邻里 Linli", page_icon="🏘️", layout="wide")
st.sidebar.toggle(t("english", "en"), value=get_settings().language == "en", key=LANGUAGE_KEY)
lang = current_language()
st.sidebar.caption(t("app_title", lang))
# Each page with the action a role needs to see it.
guarded = [
    (st.Page("views/overview.py", title=t("nav_overview", lang), icon=":material/dashboard:", default=True),
     "view_overview"),
    (st.Page("views/flow_runs.py", title=t("nav_flows", lang), icon=":material/account_tree:"), "view_processes"),
    (st.Page("views/processes.py", title=t("nav_processes", lang), icon=":material/schema:"), "view_processes"),
    (st.Page("views/collection.py", title=t("nav_collection", lang), icon=":material/badge:"), "view_residents"),
    (st.Page("views/patrol.py", title=t("nav_patrol", lang), icon=":material/nightlight:"), "view_patrols"),
    (st.Page("views/announcements.py", title=t("nav_announcements", lang), icon=":material/campaign:"),
     "view_announcements"),
    (st.Page("views/devices.py", title=t("nav_devices", lang), icon=":material/sensors:"), "view_devices"),
    (st.Page("views/alarms.py", title=t("nav_alarms", lang), icon=":material/notifications_active:"), "view_devices"),
    (st.Page("views/records.py", title=t("nav_records", lang), icon=":material/door_front:"), "view_records"),
    (st.Page("views/datahub.py", title=t("nav_datahub", lang), icon=":material/cloud_upload:"), "view_devices"),
    (st.Page("views/report.py", title=t("nav_report", lang), icon=":material/photo_camera:"), "file_on_behalf"),
    (st.Page("views/work.py", title=t("nav_work", lang), icon=":material/handyman:"), "work_cases"),
]
# Open mode (no accounts yet): the pages from before accounts existed.
OPEN = {"view_overview", "view_processes", "view_devices", "view_records", "file_on_behalf", "work_cases"}
pages = [page for page, action in guarded if action in OPEN]
if accounts_exist():
    user = current_user()
    if user is None:
        pages = [st.Page(login_page, title=t("login_title", lang), icon=":material/login:", default=True)]
    else:
        pages = [page for page, action in guarded if allowed(user, action)]
        st.sidebar.write(t("signed_in_as", lang, user=user.username, role=t(f"role.{user.role}", lang)))
        if st.sidebar.button(t("logout", lang)):
            sign_out()
            st.rerun()
else:
    st.sidebar.caption("⚠️ " + t("no_accounts", lang))  # a caption: the pages own the alerts
st.navigation(pages).run()
