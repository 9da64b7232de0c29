"""Sign-in for the dashboard: the login form, the signed-in user, and the role check every page makes.

Until the first account exists (`linli user add NAME --role admin`) the dashboard runs open, showing
only the pages it had before accounts existed, with a banner saying so; afterwards every page
needs a signed-in user whose role allows it.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy import inspect
from sqlmodel import select

from dashboards.texts import current_language, t
from linli import auth, db
from linli.errors import AccessDenied
from linli.models.registry import UserAccount

TOKEN_KEY = "linli_token"  # session-state key of the signed-in session's token


def accounts_exist() -> bool:
    """Whether any dashboard account exists (then sign-in is required); False before the schema exists."""
    if not inspect(db.get_engine()).has_table(UserAccount.__tablename__):
        return False
    with db.session_scope() as session:
        return session.exec(select(UserAccount.id).limit(1)).first() is not None


def current_user() -> auth.CurrentUser | None:
    """The signed-in user, or None (also when the session expired)."""
    token = st.session_state.get(TOKEN_KEY)
    if not token:
        return None
    try:
        with db.session_scope() as session:
            return auth.session_user(session, token)
    except AccessDenied:
        st.session_state.pop(TOKEN_KEY, None)
        return None


def sign_in(username: str, password: str) -> str:
    """Sign in and keep the token in the session; '' on success, else the message to show."""
    message = ""
    with db.session_scope() as session:
        try:
            st.session_state[TOKEN_KEY] = auth.login(session, username, password)
        except AccessDenied as err:
            message = err.message  # the failure count is committed with the scope
    return message


def sign_out() -> None:
    """End the session."""
    token = st.session_state.pop(TOKEN_KEY, None)
    if token:
        with db.session_scope() as session:
            auth.logout(session, token)


def login_page() -> None:
    """The sign-in form (a page of its own)."""
    from dashboards.texts import current_language

    lang = current_language()
    st.title(t("login_title", lang))
    with st.form("login"):
        username = st.text_input(t("login_user", lang), key="login_user")
        password = st.text_input(t("login_password", lang), type="password", key="login_password")
        submitted = st.form_submit_button(t("login_submit", lang))
    if submitted:
        message = sign_in(username, password)
        if message:
            st.error(message)
        else:
            st.rerun()


def page_user(action: str, lang: str) -> auth.CurrentUser:
    """The signed-in user if their role may `action`; otherwise the page says why and stops."""
    user = current_user()
    if user is None:
        st.warning(t("login_needed", lang))
        st.stop()
    if not auth.allowed(user, action):
        st.error(t("role_denied", lang, role=t(f"role.{user.role}", lang)))
        st.stop()
    return user  # type: ignore[return-value]


def page_guard(action: str, lang: str) -> auth.CurrentUser | None:
    """For pages that also run open (no accounts yet): None in open mode, else as `page_user`."""
    if not accounts_exist():
        return None
    return page_user(action, lang)


def open_page(title_key: str, action: str) -> str:
    """A page's head: its title in the chosen language, the role check (once accounts exist), and a
    migrated database — else the page says what to do and stops. Returns the language."""
    lang = current_language()
    st.title(t(title_key, lang))
    page_guard(action, lang)
    if not db.is_current(db.get_engine()):
        st.warning(t("db_missing", lang))
        st.stop()
    return lang
