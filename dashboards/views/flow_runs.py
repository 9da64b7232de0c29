"""Flow health: recent Prefect flow runs with their states, and the deployments with schedules and triggers."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import streamlit as st

from dashboards.access import page_guard
from dashboards.texts import current_language, duration, local_time, t
from linli import prefect_api
from linli.errors import DeliveryError
from linli.models import utcnow
from linli.settings import get_settings

REFRESH = timedelta(seconds=5)
ICONS = {"COMPLETED": "✅", "RUNNING": "🔄", "FAILED": "❌", "CRASHED": "💥", "SCHEDULED": "🕒", "PENDING": "⏳",
         "CANCELLED": "🚫", "CANCELLING": "🚫", "PAUSED": "⏸️"}
HEADLINE = ("COMPLETED", "RUNNING", "FAILED", "CRASHED")
lang = current_language()
settings = get_settings()
api_url = settings.prefect_api_url
st.title(t("flows_title", lang))
page_guard("view_processes", lang)  # roles, once accounts exist
st.link_button(t("open_prefect", lang), api_url.removesuffix("/").removesuffix("/api"))


def state(state_type: str | None, state_name: str | None) -> str:
    """A run's state with an icon, in the dashboard's language (Prefect's own name for custom states)."""
    label = t(f"state.{state_type}", lang) if state_type else ""
    if state_name and state_name.lower() != (state_type or "").lower():
        label = f"{label} ({state_name})"  # e.g. Scheduled (Late), Failed (AwaitingRetry)
    return f"{ICONS.get(state_type or '', '')} {label}".strip()


@st.fragment(run_every=REFRESH)
def live() -> None:
    """Runs and deployments as Prefect sees them now."""
    try:
        runs = prefect_api.recent_flow_runs(api_url)
        deployments = prefect_api.deployments(api_url)
    except DeliveryError as err:
        st.warning(f"{t('prefect_unreachable', lang)}\n\n{err}")
        return
    counts = Counter(run.state_type for run in runs)
    for col, state_type in zip(st.columns(len(HEADLINE)), HEADLINE, strict=True):
        col.metric(state(state_type, None), counts.get(state_type, 0))
    st.subheader(t("recent_runs", lang))
    if runs:
        st.dataframe([{
            t("col_run", lang): r.name, t("col_flow", lang): r.flow_name, t("col_deployment", lang): r.deployment_name,
            t("col_state", lang): state(r.state_type, r.state_name),
            t("col_start", lang): local_time(r.start_time, settings.timezone),
            t("col_duration", lang): duration(r.duration),
        } for r in runs], hide_index=True)
    else:
        st.info(t("no_runs", lang))
    st.subheader(t("deployments", lang))
    if deployments:
        st.dataframe([{
            t("col_name", lang): d.name, t("col_flow", lang): d.flow_name, t("col_schedule", lang): d.schedule,
            t("col_triggers", lang): d.triggers, t("col_paused", lang): d.paused,
        } for d in deployments], hide_index=True)
    else:
        st.info(t("no_deployments", lang))
    st.caption(t("refresh", lang, seconds=int(REFRESH.total_seconds()), time=local_time(utcnow(), settings.timezone)))


live()
