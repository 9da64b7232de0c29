"""信息采集: residents as the signed-in role may see them (masked, grid-scoped), edits with optional review,
audited reveals and exports."""

from __future__ import annotations

import streamlit as st

from dashboards.access import page_user
from dashboards.texts import current_language, t
from linli import db, people
from linli.auth import allowed
from linli.errors import LinliError
from linli.loop import LoopConfig
from linli.models import ResidentKind
from linli.settings import get_settings

lang = current_language()
st.title(t("collection_title", lang))
user = page_user("view_residents", lang)
st.caption(t("collection_help", lang))

with db.session_scope() as session:
    rows = people.residents(session, user)
if not rows:
    st.info(t("no_residents", lang))
    st.stop()
st.dataframe([{
    t("col_id", lang): r.id, t("col_person", lang): r.name, t("col_phone", lang): r.phone,
    t("col_id_number", lang): r.id_number, t("col_kind", lang): t(f"kind.{r.kind}", lang),
    t("col_building", lang): r.building, t("col_grid", lang): r.grid, t("col_household", lang): r.household,
    t("col_alone", lang): "✓" if r.living_alone else "", t("col_tags", lang): ", ".join(r.tags),
} for r in rows], hide_index=True)
by_id = {r.id: r for r in rows}
resident_id = st.selectbox(t("pick_resident", lang), list(by_id), index=None, key="resident",
                           format_func=lambda i: f"{i} · {by_id[i].name} · {by_id[i].building}")


def shown_error(err: LinliError) -> None:
    """A refused action: what is wrong and what to do."""
    st.error(f"{err.message}" + (f" — {err.hint}" if err.hint else ""))


if resident_id is not None and allowed(user, "edit_residents"):
    row = by_id[resident_id]
    st.subheader(t("edit_title", lang))
    with st.form("edit"):
        phone = st.text_input(t("edit_phone", lang), key="edit_phone", placeholder=row.phone)
        kinds = [k.value for k in ResidentKind]
        kind = st.selectbox(t("edit_kind", lang), kinds, index=kinds.index(row.kind), key="edit_kind",
                            format_func=lambda k: t(f"kind.{k}", lang))
        alone = st.checkbox(t("edit_alone", lang), value=row.living_alone, key="edit_alone")
        hours = st.number_input(t("edit_watch_hours", lang), min_value=1, max_value=336, value=24, key="edit_hours")
        review = st.checkbox(t("edit_review", lang), value=True, key="edit_review")
        if st.form_submit_button(t("edit_submit", lang)):
            changes: dict[str, object] = {"kind": kind, "living_alone": alone, "watch_hours": int(hours)}
            if phone.strip():
                changes["phone"] = phone.strip()
            try:
                with db.session_scope() as session:
                    change = people.propose_change(session, user, resident_id, changes, review=review)
                st.success(t("edit_saved", lang, status=change.status))
            except LinliError as err:
                shown_error(err)

if resident_id is not None and allowed(user, "file_on_behalf"):
    st.subheader(t("behalf_title", lang))
    with st.form("behalf"):
        description = st.text_area(t("behalf_text", lang), key="behalf_text")
        if st.form_submit_button(t("behalf_submit", lang)):
            try:
                with db.session_scope() as session:
                    number = people.file_on_behalf(session, user, resident_id, description, category=None,
                                                   config=LoopConfig.from_settings(get_settings()))
                st.success(t("behalf_filed", lang, number=number))
            except LinliError as err:
                shown_error(err)

if resident_id is not None and allowed(user, "reveal"):
    st.subheader(t("reveal_title", lang))
    with st.form("reveal"):
        field = st.selectbox(t("reveal_field", lang), sorted(people.REVEALABLE), key="reveal_field",
                             format_func=lambda f: t(f"field.{f}", lang))
        reason = st.text_input(t("reveal_reason", lang), key="reveal_reason")
        if st.form_submit_button(t("reveal_submit", lang)):
            try:
                with db.session_scope() as session:
                    st.code(people.reveal(session, user, resident_id, field, reason))
            except LinliError as err:
                shown_error(err)

if allowed(user, "review_changes"):
    st.subheader(t("review_title", lang))
    with db.session_scope() as session:
        pending = people.pending_changes(session, user)
    if not pending:
        st.info(t("no_pending", lang))
    for change in pending:
        cols = st.columns([4, 1, 1])
        cols[0].write(f"#{change.id} · {change.by} · resident {change.resident_id} · {change.changes}")
        for col, approve, label in ((cols[1], True, "approve"), (cols[2], False, "reject")):
            if col.button(t(label, lang), key=f"{label}-{change.id}"):
                try:
                    with db.session_scope() as session:
                        people.review_change(session, user, change.id, approve=approve)  # type: ignore[arg-type]
                    st.rerun()
                except LinliError as err:
                    shown_error(err)

if allowed(user, "export"):
    st.subheader(t("export_title", lang))
    unmasked = allowed(user, "export_unmasked") and st.toggle(t("export_unmasked", lang), key="export_unmasked")
    reason = st.text_input(t("reveal_reason", lang), key="export_reason") if unmasked else ""
    if st.button(t("export_make", lang), key="export_make"):
        try:
            with db.session_scope() as session:
                st.session_state["export_csv"] = people.export_csv(session, user, unmasked=unmasked, reason=reason)
                st.session_state["export_vehicles"] = people.export_vehicles_csv(session, user, unmasked=unmasked,
                                                                                 reason=reason)
        except LinliError as err:
            shown_error(err)
    if st.session_state.get("export_csv"):
        st.download_button(t("export_download", lang), st.session_state["export_csv"], file_name="residents.csv",
                           mime="text/csv")
        st.download_button(t("export_vehicles", lang), st.session_state["export_vehicles"],
                           file_name="vehicles.csv", mime="text/csv")
