"""今日巡更: today's patrol rounds, each checkpoint's status and each route's completion."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import streamlit as st

from dashboards.access import page_user
from dashboards.texts import current_language, local_time, t
from linli import db
from linli.models import utcnow
from linli.patrol import rounds_on
from linli.settings import get_settings

REFRESH = timedelta(seconds=30)
lang = current_language()
tz = get_settings().timezone
st.title(t("patrol_title", lang))
page_user("view_patrols", lang)


@st.fragment(run_every=REFRESH)
def rounds() -> None:
    """Completion per route and every checkpoint's status, refreshed while open."""
    with db.session_scope() as session:
        rows = rounds_on(session, now=utcnow(), tz=tz)
    if not rows:
        st.info(t("no_routes", lang))
        return
    done: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        done[r.route][1] += 1
        done[r.route][0] += r.status in {"ok", "late"}
    cols = st.columns(max(len(done), 1))
    for col, (route, (ok, total)) in zip(cols, done.items(), strict=False):
        col.metric(route, f"{ok}/{total}", help=t("patrol_done", lang, route=route, done=ok, total=total))
    st.dataframe([{
        t("col_route", lang): r.route, t("col_seq", lang): r.seq, t("col_checkpoint", lang): r.name,
        t("col_window", lang): r.window, t("col_status", lang): t(f"patrol.{r.status}", lang),
        t("col_scanned", lang): local_time(r.scanned_at, tz),
    } for r in rows], hide_index=True)


rounds()
