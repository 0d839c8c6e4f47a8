"""Who the user of a request is.

On Databricks Apps every request reaches the app through the platform's reverse proxy, which
signs the user in and tells the app who they are in headers it sets itself (Databricks docs,
"Access HTTP headers passed to Databricks apps", dev-tools/databricks-apps/http-headers):
- X-Forwarded-Email: the user's email, from the identity provider;
- X-Forwarded-User: the user's identifier, from the identity provider;
- X-Forwarded-Preferred-Username: the user's name, from the identity provider;
- X-Forwarded-Access-Token: the user's own token (with user authorization, see the README).
The app knows it runs on Databricks Apps from DATABRICKS_APP_NAME, which the platform sets in
every app (docs: dev-tools/databricks-apps/system-env).

Deployed, these headers are the user: a `user_id` that the client sends (custom_inputs or
context) must name the same user, or the request is refused (403); a request without them did
not come through the proxy and is refused (401). The user's memories and conversations are
kept under that identity.

Locally there is no proxy, and anyone can send any header: the headers are ignored, and the
client's `user_id`, if any, is taken as it is.
"""

import os
from collections.abc import Mapping
from typing import Any

EMAIL_HEADER = "x-forwarded-email"
USER_HEADER = "x-forwarded-user"
USERNAME_HEADER = "x-forwarded-preferred-username"
TOKEN_HEADER = "x-forwarded-access-token"


class IdentityError(Exception):
    """The request does not say who its user is (401), or says someone else (403)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def on_databricks_apps() -> bool:
    """Whether this process runs as a Databricks App, behind the platform's proxy."""
    return bool(os.environ.get("DATABRICKS_APP_NAME", "").strip())


def _names(headers: Mapping[str, str]) -> list[str]:
    """The user's names in the proxy's headers, the email first (lowercase header names)."""
    values = (
        headers.get(name, "").strip() for name in (EMAIL_HEADER, USER_HEADER, USERNAME_HEADER)
    )
    return [value for value in values if value]


def proxy_user(headers: Mapping[str, str]) -> str | None:
    """The user the proxy signed in (their email, else their identifier); None locally."""
    if not on_databricks_apps():
        return None
    names = _names(headers)
    return names[0] if names else None


def client_user_id(data: Mapping[str, Any]) -> str | None:
    """The user_id the client sent: custom_inputs first, then context (as the agent reads it)."""
    for field in ("custom_inputs", "context"):
        section = data.get(field)
        if isinstance(section, dict) and section.get("user_id") not in (None, ""):
            return str(section["user_id"])
    return None


def check_request(headers: Mapping[str, str], data: Mapping[str, Any]) -> None:
    """Deployed: refuse a request without the proxy's user, or naming another user.

    `headers` has lowercase names. Locally this accepts everything.
    """
    if not on_databricks_apps():
        return
    names = _names(headers)
    if not names:
        raise IdentityError(
            401,
            "No signed-in user: on Databricks Apps requests must come through the app's URL, "
            "whose proxy says who the user is (X-Forwarded-Email).",
        )
    claimed = client_user_id(data)
    if claimed is not None and claimed.casefold() not in {name.casefold() for name in names}:
        raise IdentityError(
            403,
            f"user_id {claimed[:100]!r} is not the signed-in user: leave it out (the app knows "
            "who you are) or send your own.",
        )


def request_user(headers: Mapping[str, str], client_user: str | None) -> str | None:
    """The user of a request: the proxy's deployed (checked by check_request), else the
    client's own user_id, if any."""
    if on_databricks_apps():
        return proxy_user({key.lower(): value for key, value in headers.items()})
    return client_user
