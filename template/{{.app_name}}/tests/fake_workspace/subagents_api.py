"""Sub-agents on the fake (setting `subagents`), and OAuth machine-to-machine sign-in.

`subagents` lists sub-agents as the `subagents` prompt does: serving endpoint names, and
Databricks Apps as `apps/<name>`::

    fake.configure(subagents=["research-agent", "apps/billing-agent"])

- an endpoint listed there answers POST /serving-endpoints/<name>/invocations in the Responses
  API format (`{"input": [...]}` in, `{"output": [...]}` out) instead of as an LLM; this module
  wraps the route of `llm` in place (see `_install`), so `server` registers it with one import;
- an app listed there exists: GET /api/2.0/apps/<name> gives its URL, which is served by this
  fake too (`/fake-apps/<name>`), and POST <url>/responses answers in the Responses format after
  checking the bearer token.

Both answer `<target> answers: <the question>`. Databricks Apps accept OAuth tokens only, so
the fake also signs in a service principal, as the SDK's `oauth-m2m` does: oauth_env() gives
its settings (client id and secret instead of a token). The access token it issues is the
fake's token, which every route accepts.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any

from starlette.responses import JSONResponse, Response

from .core import ROUTES, Call, Handler, error, route

APP_PREFIX = "apps/"
APPS_PATH = "/fake-apps"
OAUTH_CLIENT_ID = "fake-service-principal"
OAUTH_CLIENT_SECRET = "fake-client-secret"
INVOCATIONS_PATH = "/serving-endpoints/{name}/invocations"


def oauth_env(fake: Any) -> dict[str, str]:
    """fake.env() with OAuth machine-to-machine credentials in place of the token."""
    env = {key: value for key, value in fake.env().items() if key != "DATABRICKS_TOKEN"}
    return {
        **env,
        "DATABRICKS_CLIENT_ID": OAUTH_CLIENT_ID,
        "DATABRICKS_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
    }


def subagent_answer(target: str, question: str) -> str:
    return f"{target} answers: {question}"


def _endpoints(call: Call) -> set[str]:
    return {s for s in call.settings.subagents if not s.startswith(APP_PREFIX)}


def _apps(call: Call) -> set[str]:
    return {s.removeprefix(APP_PREFIX) for s in call.settings.subagents if s.startswith(APP_PREFIX)}


def _question(body: Any) -> str | None:
    """The last user message of a Responses API request, or None if the body is not one."""
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return None
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    str(part.get("text") or "") for part in content if isinstance(part, dict)
                )
    return None


def _responses_answer(call: Call, target: str) -> Response:
    question = _question(call.body)
    if question is None:
        return error(400, "BAD_REQUEST", "Expected a Responses API body: {'input': [...]}")
    digest = hashlib.sha1(json.dumps(call.body, sort_keys=True).encode()).hexdigest()[:16]
    text = subagent_answer(target, question)
    message = {
        "type": "message",
        "id": f"msg_{digest}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return JSONResponse({"id": f"resp_{digest}", "object": "response", "output": [message]})


def _as_subagent(handler: Handler) -> Handler:
    async def subagent_or_llm(call: Call) -> Response:
        name = call.params.get("name")
        if name in _endpoints(call):
            return _responses_answer(call, name)
        return await handler(call)

    return subagent_or_llm


@route("GET", "/api/2.0/apps/{name}")
async def get_app(call: Call) -> Response:
    name = call.params["name"]
    if name not in _apps(call):
        return error(404, "RESOURCE_DOES_NOT_EXIST", f"App with name {name} does not exist.")
    return JSONResponse(
        {
            "name": name,
            "url": f"{call.base_url}{APPS_PATH}/{name}",
            "app_status": {"state": "RUNNING"},
            "compute_status": {"state": "ACTIVE"},
        }
    )


@route("POST", APPS_PATH + "/{name}/responses")
async def app_responses(call: Call) -> Response:
    name = call.params["name"]
    if name not in _apps(call):
        return error(404, "RESOURCE_DOES_NOT_EXIST", f"No app {name}.")
    return _responses_answer(call, APP_PREFIX + name)


@route("GET", "/oidc/.well-known/oauth-authorization-server", auth=False)
async def oidc_metadata(call: Call) -> Response:
    base = f"{call.base_url}/oidc"
    return JSONResponse(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/v1/authorize",
            "token_endpoint": f"{base}/v1/token",
        }
    )


@route("POST", "/oidc/v1/token", auth=False)
async def oauth_token(call: Call) -> Response:
    """Client credentials grant, with the client's id and secret in a Basic header."""
    expected = base64.b64encode(f"{OAUTH_CLIENT_ID}:{OAUTH_CLIENT_SECRET}".encode()).decode()
    if call.request.headers.get("authorization") != f"Basic {expected}":
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    return JSONResponse(
        {
            "access_token": call.settings.token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "all-apis",
        }
    )


def _install() -> None:
    """Wrap the invocations route (found by path: other modules may have wrapped it already)."""
    sample = INVOCATIONS_PATH.replace("{name}", "any-endpoint")
    for index, candidate in enumerate(ROUTES):
        if candidate.method == "POST" and candidate.pattern.fullmatch(sample):
            ROUTES[index] = dataclasses.replace(candidate, handler=_as_subagent(candidate.handler))


_install()
