"""Who is using the dashboard and what they may do: the one place that answers "may this person do that?".

Roles are ranked: a viewer reads every page and checks photos on Predict; a reviewer also decides flagged photos; an
operator also starts screening jobs, training runs and galleries, exports cases and cancels their own jobs; an admin
also adopts flagging lines and cancels or resumes anyone's job. Who has which role is in the settings file
(wildvision.settings), by e-mail address or by an OpenID Connect claim.

Without sign-in configured the dashboard is single-user: it serves only this machine (loopback), the person at it has
every right, and the name they type is kept with their decisions. Sign-in (Streamlit's st.login) is what lets a
team share one server; serving the network without it is refused unless the settings say so explicitly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from wildvision.settings import ROLES, Settings

ACTIONS = {  # what each action needs, at least
    "view": "viewer",
    "predict": "viewer",
    "decide": "reviewer",
    "screen": "operator",
    "train": "operator",
    "export": "operator",
    "gallery": "operator",
    "cancel own job": "operator",
    "adopt a flagging line": "admin",
    "cancel anyone's job": "admin",
}
ACTION_WORDS = {
    "view": "see this page",
    "predict": "check photos",
    "decide": "decide flagged photos",
    "screen": "start a screening job",
    "train": "start training runs",
    "export": "export cases",
    "gallery": "make explanation galleries",
    "cancel own job": "cancel or resume your jobs",
    "adopt a flagging line": "adopt a flagging line",
    "cancel anyone's job": "cancel or resume other people's jobs",
}
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Person:
    """Someone using the dashboard. `identity` is what their decisions and jobs record: the signed-in e-mail address,
    or in single-user mode the name they typed ("" before they type one). `role` is None for a signed-in person who is
    not on the team list."""

    identity: str
    role: str | None
    signed_in: bool

    def may(self, action: str) -> bool:
        need = ACTIONS[action]
        return self.role is not None and ROLES.index(self.role) >= ROLES.index(need)

    def refusal(self, action: str) -> str:
        """Why this person may not do `action`, and whom to ask."""
        need = ACTIONS[action]
        if self.role is None:
            return f"You are signed in as {self.identity}, who is not on this server's team list. Ask its admin to add you."
        return (
            f"To {ACTION_WORDS[action]} you need the {need} role; you are signed in as {self.identity} with the {self.role} role. "
            "Ask this server's admin if you need it."
        )

    def owns(self, owner: str | None) -> bool:
        """Whether a job recorded as started by `owner` is this person's (jobs from before owners were kept are anyone's)."""
        return not owner or owner == self.identity

    def may_manage(self, owner: str | None) -> bool:
        """Whether this person may cancel or resume a job started by `owner`: an admin anyone's, an operator their own."""
        return self.may("cancel anyone's job") or (self.may("cancel own job") and self.owns(owner))


def single_user(name: str) -> Person:
    """The person at a single-user dashboard: every right, known by the name they type."""
    return Person(identity=name.strip(), role="admin", signed_in=False)


def role_for(email: str | None, claims: Mapping[str, object], settings: Settings) -> str | None:
    """The role of a signed-in person: from the settings' claim if the identity provider sends it (the highest role it
    names), else from their e-mail address on the team list; None when neither gives one."""
    if settings.role_claim and settings.role_claim in claims:
        value = claims[settings.role_claim]
        named = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
        found = [role for role in named if role in ROLES]
        if found:
            return max(found, key=ROLES.index)
    return settings.members.get((email or "").strip().lower())


def signed_in(email: str | None, claims: Mapping[str, object], settings: Settings) -> Person:
    """A signed-in person; identity is the e-mail address (else the provider's subject)."""
    identity = (email or str(claims.get("sub") or "")).strip()
    return Person(identity=identity, role=role_for(email, claims, settings), signed_in=True)


def is_loopback(address: str | None) -> bool:
    """Whether the server's address serves only this machine. An empty address means every interface."""
    if not address:
        return False
    if address.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def serving_problem(address: str | None, sign_in: bool, forwarded: bool, settings: Settings) -> str | None:
    """Why this server must not serve its pages, or None. Without sign-in it serves only its own machine: not an
    address others reach, nor a reverse proxy passing other machines' requests (`forwarded`), unless the settings
    explicitly allow it."""
    if sign_in or settings.serve_network_without_sign_in:
        return None
    if not is_loopback(address):
        where = "every network address" if not address or address.strip("[] ") in ("0.0.0.0", "::") else f"address {address}"
        return (
            f"This dashboard is serving {where} without sign-in, so anyone who reaches it could use it. Configure sign-in "
            '(docs/team-server.md), or serve only this machine (server.address = "127.0.0.1" in .streamlit/config.toml).'
        )
    if forwarded:
        return (
            "This dashboard is reached through a proxy without sign-in, so anyone who reaches the proxy could use it. "
            "Configure sign-in (docs/team-server.md) before serving a team."
        )
    return None
