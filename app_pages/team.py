"""Sign-in, the person using the page and what they may do, for every page (layout; the rules are wildvision.access).

Home.py calls `gate()` before any page runs: it refuses to serve a network without sign-in, asks for sign-in where it
is configured (Streamlit's st.login, OpenID Connect, set up in .streamlit/secrets.toml) and turns away people who are
not on the team list. Pages then ask `person()` who is there and `allowed(action)` before offering an action.
"""

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from app_pages.widgets import md
from wildvision import access
from wildvision.settings import SettingsError, load_settings

NAME_KEY = "reviewer"  # single-user mode's typed name, kept in the session and the address bar


def sign_in_configured() -> bool:
    """Whether .streamlit/secrets.toml has an [auth] section, so st.login can sign people in."""
    try:
        return "auth" in st.secrets
    except (StreamlitSecretNotFoundError, FileNotFoundError):
        return False


def _forwarded() -> bool:
    headers = st.context.headers
    return any(name in headers for name in ("X-Forwarded-For", "Forwarded", "X-Real-Ip"))


def person() -> access.Person:
    """Who is using this page: the signed-in person, or in single-user mode whoever typed the name in the name box."""
    if sign_in_configured():
        user = st.user.to_dict()
        return access.signed_in(user.get("email"), user, load_settings())
    return access.single_user(st.session_state.get(NAME_KEY) or "")


def allowed(action: str) -> bool:
    """Whether the person may do `action`; if not, says why (and whom to ask) where the action would have been."""
    who = person()
    if who.may(action):
        return True
    st.info(md(who.refusal(action)))
    return False


def name_box(container=st) -> None:
    """In single-user mode, the box for the name kept with each decision; signed in, who is signed in."""
    who = person()
    if who.signed_in:
        container.caption(f"Signed in as {md(who.identity)} ({who.role}).")
    else:
        container.text_input("Your name (kept with each decision)", key=NAME_KEY, bind="query-params", persist_state="session", placeholder="e.g. Ana")


def gate() -> bool:
    """Whether pages may be served to this browser; when not, the page says why (and offers sign-in where it helps)."""
    try:
        settings = load_settings()
    except SettingsError as error:
        st.title("wildvision")
        st.error(f"This dashboard's settings cannot be used: {error}. Whoever runs the server must fix them.")
        return False
    configured = sign_in_configured()
    problem = access.serving_problem(st.get_option("server.address"), configured, _forwarded(), settings)
    if problem:
        st.title("wildvision")
        st.error(problem)
        return False
    if not configured:
        return True
    if not st.user.get("is_logged_in", False):
        st.title("wildvision")
        st.write("This dashboard is shared by a team. Sign in to use it.")
        st.button("Sign in", type="primary", on_click=st.login)
        return False
    who = person()
    with st.sidebar:
        st.caption(f"Signed in as {md(who.identity)}" + (f" ({who.role})" if who.role else ""))
        st.button("Sign out", on_click=st.logout)
    if who.role is None:
        st.title("wildvision")
        st.warning(md(who.refusal("view")))
        return False
    return True
