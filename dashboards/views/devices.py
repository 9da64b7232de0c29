"""Devices: how many are online, a building view with open alarms, and the device list (state, battery, last seen)."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboards.access import open_page
from dashboards.texts import local_time, t
from linli import db
from linli.devices import views
from linli.devices.registry import DEVICE_TYPES
from linli.models import DeviceState

REFRESH = timedelta(seconds=5)
lang = open_page("devices_title", "view_devices")  # roles, once accounts exist
state = st.selectbox(t("dev_filter_state", lang), [s.value for s in DeviceState], index=None, key="device_state",
                     format_func=lambda s: t(f"dev_{s}", lang), placeholder=t("all", lang))


@st.fragment(run_every=REFRESH)
def devices(state: str | None) -> None:
    """Counts, the building view and the list, refreshed while the page is open."""
    from linli.settings import get_settings

    tz = get_settings().timezone
    with db.session_scope() as session:
        counts = views.state_counts(session=session)
        buildings = views.building_view(session=session)
        rows = views.device_rows(session=session, state=state)
    cols = st.columns(3)
    for col, name in zip(cols, ("online", "offline", "maintenance"), strict=True):
        col.metric(t(f"dev_{name}", lang), counts.get(name, 0))
    if not rows and not buildings:
        st.info(t("no_devices", lang))
        return
    st.subheader(t("dev_buildings", lang))
    st.dataframe([{t("dv_building", lang): b["building"], t("dv_online", lang): b["online"],
                   t("dv_offline", lang): b["offline"], t("dv_maintenance", lang): b["maintenance"],
                   t("dv_alarms", lang): b["alarms"]} for b in buildings], hide_index=True)
    located = [{"lat": b["lat"], "lon": b["lon"]} for b in buildings if b["lat"] is not None]
    if located:
        st.map(located, size=20, zoom=14)
    st.subheader(t("dev_list", lang))
    st.dataframe([{t("dv_code", lang): r.code, t("dv_type", lang): r.type_zh if lang == "zh" else r.type_en,
                   t("dv_building", lang): f"{r.community} {r.building}".strip(),
                   t("dv_floor", lang): "" if r.floor is None else r.floor,
                   t("dv_state", lang): t(f"dev_{r.state}", lang),
                   t("dv_battery", lang): "" if r.battery is None else f"{r.battery}%",
                   t("dv_last_seen", lang): local_time(r.last_seen, tz)} for r in rows], hide_index=True)


devices(state)

# Telemetry over days reads the hourly aggregates (telemetry_hourly) plus the open hour, never a week of raw rows.
st.subheader(t("tel_title", lang))
with db.session_scope() as session:
    metered = {r.code: r for r in views.device_rows(session=session) if DEVICE_TYPES[r.device_type].metrics}
if metered:
    from linli import telemetry
    from linli.models import utcnow

    pick = st.selectbox(t("tel_device", lang), sorted(metered), key="tel_device")
    spec = DEVICE_TYPES[metered[pick].device_type]
    metric = st.selectbox(t("tel_metric", lang), [m.name for m in spec.metrics], key="tel_metric",
                          format_func=lambda name: f"{name} ({next(m.unit for m in spec.metrics if m.name == name)})")
    since = utcnow() - timedelta(days=7)
    with db.session_scope() as session:
        hours = telemetry.metric_hours(session=session, device_id=metered[pick].id, metric=metric, since=since)
        summary = telemetry.metric_summary(session=session, device_id=metered[pick].id, metric=metric, since=since)
    if hours:
        st.caption(t("tel_summary", lang, count=summary.count, min=f"{summary.min:g}", avg=f"{summary.avg:.3g}",
                     max=f"{summary.max:g}", last=f"{summary.last:g}"))
        st.line_chart({"min": [p.min for p in hours], "avg": [p.avg for p in hours], "max": [p.max for p in hours]})
    else:
        st.info(t("tel_none", lang))

st.subheader(t("cmd_title", lang))
with db.session_scope() as session:
    choices = {r.code: r for r in views.device_rows(session=session)}
# One form for every device: the commands of the types present; a command a device does not take is
# refused with a clear message when sent.
offered = sorted({c for r in choices.values() for c in DEVICE_TYPES[r.device_type].commands})
with st.form("command"):
    device = st.selectbox(t("cmd_device", lang), sorted(choices), index=None, key="cmd_device",
                          placeholder=t("cmd_pick", lang))
    command = st.selectbox(t("cmd_command", lang), offered,
                           key="cmd_command", format_func=lambda c: t(f"cmd.{c}", lang))
    text = st.text_input(t("cmd_text", lang), key="cmd_text")
    who = st.text_input(t("alarm_who", lang), value="staff:", key="cmd_who")
    if st.form_submit_button(t("cmd_send", lang)) and device:
        from linli.devices import commands
        from linli.errors import LinliError
        from linli.settings import get_settings

        settings = get_settings()
        try:
            with commands.MqttPublisher(settings.mqtt.host, settings.mqtt.port, username=settings.mqtt.username,
                                        password=settings.mqtt.password.get_secret_value()) as publish, \
                    db.session_scope() as session:
                row = commands.send(session, publish, device_code=device, command=command,
                                    args={"text": text} if text else {}, requested_by=who.strip() or "dashboard",
                                    timeout_seconds=settings.devices.command_timeout_seconds)
            with st.spinner(t("cmd_waiting", lang)):
                row = commands.wait_for_answer(db.get_engine(), row.cmd_id)
            st.success(t("cmd_result", lang, status=t(f"cmdstatus.{row.status}", lang), detail=row.result or ""))
        except LinliError as err:
            st.error(str(err))
