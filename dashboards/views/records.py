"""Access and vehicle records, masked: method and a credential reference, never a face; plates masked."""

from __future__ import annotations

import streamlit as st

from dashboards.access import open_page
from dashboards.texts import local_time, t
from linli import db
from linli.devices import views
from linli.settings import get_settings

tz = get_settings().timezone
lang = open_page("records_title", "view_records")  # roles, once accounts exist
st.caption(t("records_privacy", lang))
with db.session_scope() as session:
    access = views.access_rows(session=session)
    vehicles = views.vehicle_rows(session=session)
left, right = st.tabs([t("access_records", lang), t("vehicle_records", lang)])
with left:
    if access:
        st.dataframe([{t("dv_time", lang): local_time(r["ts"], tz), t("dv_gate", lang): r["gate"],
                       t("dv_method", lang): r["method"], t("dv_credential", lang): r["credential"],
                       t("dv_direction", lang): r["direction"], t("dv_granted", lang): "✓" if r["granted"] else "✗"}
                      for r in access], hide_index=True)
    else:
        st.info(t("no_records", lang))
with right:
    if vehicles:
        st.dataframe([{t("dv_time", lang): local_time(r["ts"], tz), t("dv_gate", lang): r["gate"],
                       t("dv_plate", lang): r["plate"], t("dv_direction", lang): r["direction"],
                       t("dv_granted", lang): "✓" if r["granted"] else "✗"} for r in vehicles], hide_index=True)
    else:
        st.info(t("no_records", lang))
