"""The hand-written connexion handlers of greetings.yaml: parameters as keyword
arguments, the bearer token's info as ``token_info`` (connexion's conventions)."""

from __future__ import annotations

from typing import Any

#: apicrud's session store, set by app.create (connexion's security runs outside Flask)
SESSIONS: Any = None


def hello(name: str, excited: bool = False) -> dict:
    return {"greeting": f"Hello, {name}{'!' if excited else '.'}"}


def whoami(user: str | None, token_info: dict) -> dict:
    return {"uid": user, "method": token_info.get("method")}


def token_info(token: str) -> dict | None:
    """x-bearerInfoFunc: an apicrud session token is good here too (None: connexion's 401)."""
    session = SESSIONS.get(token) if SESSIONS is not None else None
    if session is None:
        return None
    return {"sub": session["uid"], "method": "session"}
