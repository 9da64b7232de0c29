"""Data-hub push status per endpoint: delivered, parked, how far behind, the last error."""

from __future__ import annotations

import streamlit as st

from dashboards.access import open_page
from dashboards.texts import local_time, t
from linli import datahub, db
from linli.settings import get_settings

tz = get_settings().timezone
lang = open_page("datahub_title", "view_devices")  # roles, once accounts exist
with db.session_scope() as session:
    rows = datahub.status(session)
if rows:
    st.dataframe([{t("dv_endpoint", lang): r["endpoint"], t("dv_state", lang): r["status"],
                   t("dv_delivered", lang): r["delivered"], t("dv_parked", lang): r["parked"],
                   t("dv_behind", lang): r["behind"], t("dv_error", lang): r["last_error"],
                   t("dv_updated", lang): local_time(r["updated_at"], tz)} for r in rows], hide_index=True)
else:
    st.info(t("no_endpoints", lang))
