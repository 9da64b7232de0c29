"""社区公告: publish a notice to a community, building or group, and see each one's delivery."""

from __future__ import annotations

import streamlit as st

from dashboards.access import page_user
from dashboards.texts import current_language, t
from linli import db
from linli.announce import AUDIENCES, broadcast, deliveries, publish
from linli.auth import allowed
from linli.devices.commands import MqttPublisher
from linli.errors import LinliError
from linli.people import deliver_queued
from linli.settings import get_settings

lang = current_language()
settings = get_settings()
st.title(t("announcements_title", lang))
user = page_user("view_announcements", lang)

if allowed(user, "publish_announcement"):
    with st.expander(t("publish_title", lang), expanded=False), st.form("publish"):
        title = st.text_input(t("ann_title", lang), key="ann_title")
        body = st.text_area(t("ann_body", lang), key="ann_body")
        community = st.text_input(t("ann_community", lang), key="ann_community")
        building = st.text_input(t("ann_building", lang), key="ann_building")
        audience = st.selectbox(t("ann_audience", lang), list(AUDIENCES), key="ann_audience",
                                format_func=lambda a: t(f"audience.{a}", lang))
        speakers = st.checkbox(t("ann_broadcast", lang), key="ann_broadcast")
        if st.form_submit_button(t("ann_publish", lang)):
            try:
                with db.session_scope() as session:
                    published = publish(session, user, title=title, body=body, community=community.strip(),
                                        building=building.strip(), audience=audience, broadcast=speakers,
                                        language=lang,
                                        templates_dir=settings.templates_dir)
                counts = deliver_queued(list(published.notifications), settings=settings)
                if speakers:
                    mqtt = settings.mqtt
                    with MqttPublisher(mqtt.host, mqtt.port, username=mqtt.username,
                                       password=mqtt.password.get_secret_value()) as send, \
                            db.session_scope() as session:
                        counts["loudspeakers"] = len(broadcast(session, send, published.announcement_id,
                                                               requested_by=user.actor))
                st.success(t("ann_published", lang, n=published.recipients, counts=counts))
            except LinliError as err:
                st.error(err.message + (f" — {err.hint}" if err.hint else ""))

with db.session_scope() as session:
    rows = deliveries(session)
if not rows:
    st.info(t("no_announcements", lang))
else:
    st.dataframe([{
        t("ann_title", lang): r.title, t("col_audience", lang): t(f"audience.{r.audience}", lang),
        t("col_delivery", lang): ", ".join(f"{k} {v}" for k, v in sorted(r.by_status.items())),
        t("col_published", lang): r.created_at[:16].replace("T", " "),
    } for r in rows], hide_index=True)
