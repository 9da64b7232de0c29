"""Overview: today's KPIs, cases by status, the case list with filters, and one case's timeline."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboards.access import open_page
from dashboards.texts import local_time, t
from linli import db, kpi
from linli.errors import NotFound
from linli.models import CaseStatus, utcnow
from linli.settings import get_settings

REFRESH = timedelta(seconds=5)
tz = get_settings().timezone
lang = open_page("overview_title", "view_overview")  # roles, once accounts exist

with db.session_scope() as session:
    communities = {c.id: c.name for c in kpi.communities(session=session)}
    categories = {c.id: c.name_zh if lang == "zh" else c.name_en for c in kpi.categories(session=session)}
# No selection means every community (or category); the placeholder says so.
community_id = st.selectbox(t("community", lang), list(communities), index=None, key="community",
                            format_func=communities.__getitem__, placeholder=t("all", lang))


@st.fragment(run_every=REFRESH)
def kpis(community_id: int | None) -> None:
    """The headline numbers and the status chart, refreshed while the page is open."""
    now = utcnow()
    with db.session_scope() as session:
        ov = kpi.overview(session=session, now=now, tz=tz, community_id=community_id)
    none = t("none", lang)
    cols = st.columns(4)
    cols[0].metric(t("kpi_open", lang), ov.open)
    cols[1].metric(t("kpi_new_today", lang), ov.new_today)
    cols[2].metric(t("kpi_closed_today", lang), ov.closed_today)
    cols[3].metric(t("kpi_overdue", lang), ov.overdue)
    cols = st.columns(4)
    median = ov.median_handling_hours
    cols[0].metric(t("kpi_median", lang), none if median is None else duration_text(median, lang),
                   help=t("kpi_median_help", lang))
    mean, share = ov.satisfaction_mean, ov.satisfaction_share
    cols[1].metric(t("kpi_satisfaction", lang), none if mean is None else f"{mean:.2f} / 5",
                   help=t("kpi_satisfaction_help", lang, n=ov.ratings))
    cols[2].metric(t("kpi_satisfied_share", lang), none if share is None else f"{share:.0%}")
    st.subheader(t("by_status", lang))
    labels = [t(f"status.{s}", lang) for s in ov.by_status]
    st.bar_chart({"status": labels, "count": list(ov.by_status.values())}, x="status", y="count",
                 x_label="", y_label=t("cases", lang), horizontal=True, sort=False, height=280)
    st.caption(t("refresh", lang, seconds=int(REFRESH.total_seconds()), time=local_time(now, tz)))


def duration_text(hours: float, lang: str) -> str:
    """Hours as "3.5 小时", or minutes below an hour — "0.0 小时" would hide a fast loop."""
    if hours >= 1:
        return t("hours", lang, value=hours)
    return t("minutes", lang, value=hours * 60) if hours * 60 >= 1 else t("under_a_minute", lang)


@st.fragment(run_every=REFRESH)
def case_list(community_id: int | None) -> None:
    """The filtered case list (names masked) and the timeline of the case picked from it."""
    st.subheader(t("case_list", lang))
    f1, f2, f3 = st.columns([3, 2, 1], vertical_alignment="bottom")
    statuses = f1.multiselect(t("filter_status", lang), [s.value for s in kpi.STATUS_ORDER], key="statuses",
                              format_func=lambda s: t(f"status.{s}", lang), placeholder=t("all", lang))
    category_id = f2.selectbox(t("filter_category", lang), list(categories), index=None, key="category",
                               format_func=categories.__getitem__, placeholder=t("all", lang))
    overdue_only = f3.toggle(t("filter_overdue", lang), key="overdue_only")
    with db.session_scope() as session:
        rows = kpi.list_cases(session=session, status=statuses or None, community_id=community_id,
                              category_id=category_id, overdue_only=overdue_only)
    if not rows:
        st.info(t("no_cases", lang))
        return
    st.dataframe([{
        t("col_number", lang): r.number, t("col_status", lang): t(f"status.{r.status}", lang),
        t("col_category", lang): r.category_zh if lang == "zh" else r.category_en,
        t("col_community", lang): r.community, t("col_created", lang): local_time(r.created_at, tz),
        t("col_due", lang): local_time(r.due_at, tz), t("col_overdue", lang): "⚠️" if r.overdue else "",
        t("col_level", lang): t(f"level.{r.escalation_level}", lang),
        t("col_priority", lang): t(f"priority.{r.priority}", lang),
        t("col_assignee", lang): r.assignee, t("col_reporter", lang): r.reporter,
    } for r in rows], hide_index=True)
    st.subheader(t("timeline", lang))
    number = st.selectbox(t("pick_case", lang), [r.number for r in rows], index=None, key="case",
                          placeholder=t("pick_case_placeholder", lang))
    if number:
        timeline(number)


def timeline(number: str) -> None:
    """Every step of one case, oldest first."""
    try:
        with db.session_scope() as session:
            events = kpi.case_timeline(session=session, case_number=number)
    except NotFound as err:
        st.warning(str(err))
        return
    if not events:
        st.info(t("no_events", lang))
        return

    def status(value: str | None) -> str:
        return t(f"status.{CaseStatus(value).value}", lang) if value else ""

    st.dataframe([{
        t("col_at", lang): local_time(e.at, tz), t("col_actor", lang): e.actor, t("col_action", lang): e.action,
        t("col_from", lang): status(e.from_status), t("col_to", lang): status(e.to_status),
        t("col_reason", lang): e.reason,
    } for e in events], hide_index=True)


kpis(community_id)
case_list(community_id)
