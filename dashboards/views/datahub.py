"""Data-hub push status per endpoint: delivered, parked, how far behind, the last error."""

from __future__ import annotations

import streamlit as st

from dashboards.access import page_guard
from dashboards.texts import current_language, local_time, t
from linli import datahub, db
from linli.settings import get_settings

lang = current_language()
tz = get_settings().timezone
st.title(t("datahub_title", lang))
page_guard("view_devices", lang)  # roles, once accounts exist
if not db.is_current(db.get_engine()):
    st.warning(t("db_missing", lang))
    st.stop()
with db.session_scope() as session:
    rows = datahub.status(session)
if rows:
    st.dataframe([{t("dv_endpoint", lang): r["endpoint"], t("dv_state", lang): r["status"],
                   t("dv_delivered", lang): r["delivered"], t("dv_parked", lang): r["parked"],
                   t("dv_behind", lang): r["behind"], t("dv_error", lang): r["last_error"],
                   t("dv_updated", lang): local_time(r["updated_at"], tz)} for r in rows], hide_index=True)
else:
    st.info(t("no_endpoints", lang))
