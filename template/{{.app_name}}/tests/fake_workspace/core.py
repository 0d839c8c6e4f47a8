"""The fake's building blocks: settings, recorded requests, and the route table."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from .server import FakeWorkspace


DEFAULT_TOKEN = "dapi-fake-token"
WORKSPACE_ID = "1234567890123456"
FAKE_USER = {
    "id": "4242424242424242",
    "userName": "tester@example.com",
    "displayName": "Tester",
    "active": True,
}
# SCIM `Me` of a service principal (e.g. CI signed in with GitHub OIDC): its userName is its
# application id, which is how the Databricks CLI tells the two apart (a userName that parses as
# a UUID; databricks/cli libs/iamutil/service_principal.go).
FAKE_SERVICE_PRINCIPAL = {
    "id": "7373737373737373",
    "userName": "6f0c9a52-3b1e-4d7a-9c55-2e8f41b7d0a3",
    "displayName": "github-deploy",
    "active": True,
}
IDENTITIES = {"user": FAKE_USER, "service_principal": FAKE_SERVICE_PRINCIPAL}
FILLER_TOKEN = " lorem"
ADMIN_PREFIX = "/__fake__/"

# Environment variables that select another authentication method or profile. The SDK refuses
# to run with two methods configured ("more than one authorization method configured"), and
# some readers treat a variable set to "" differently from an unset one (e.g. mlflow reads
# DATABRICKS_CONFIG_PROFILE with a "DEFAULT" fallback that only applies when it is unset).
# So callers must REMOVE these keys from the environment, not set them to "".
ENV_KEYS_TO_REMOVE: tuple[str, ...] = (
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_CONFIG_PROFILE",
    "DATABRICKS_AUTH_TYPE",
    "DATABRICKS_USERNAME",
    "DATABRICKS_PASSWORD",
    "DATABRICKS_ACCOUNT_ID",
    "DATABRICKS_WORKSPACE_ID",
    "DATABRICKS_DISCOVERY_URL",
    "DATABRICKS_TOKEN_AUDIENCE",
    "DATABRICKS_OIDC_TOKEN_ENV",
    "DATABRICKS_OIDC_TOKEN_FILEPATH",
    "DATABRICKS_OIDC_TOKEN_FILE",
    "DATABRICKS_METADATA_SERVICE_URL",
    "DATABRICKS_AZURE_RESOURCE_ID",
    "DATABRICKS_GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_CREDENTIALS",
    "ARM_CLIENT_ID",
    "ARM_CLIENT_SECRET",
    "ARM_TENANT_ID",
    "ARM_USE_MSI",
)

MISSING_CONFIG_FILE = os.path.join(
    tempfile.gettempdir(), "fake-workspace-does-not-exist", "databrickscfg"
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON; None when empty; the text itself when it is not JSON


@dataclass(frozen=True)
class Settings:
    """What the fake does; replaced as a whole on every change, so handlers see a snapshot."""

    tokens: int | None = None  # None: the answer's words; N: exactly N content chunks
    token_delay: float = 0.0  # seconds of sleep before each token
    endpoints: frozenset[str] | None = None  # None: every serving endpoint exists
    token: str = DEFAULT_TOKEN  # the app's bearer token (the only one, unless user_tokens)
    # Tokens of signed-in users, as Databricks Apps forwards them (X-Forwarded-Access-Token):
    # accepted too. Which token reached a route is in the recorded request's headers.
    user_tokens: tuple[str, ...] = ()
    faults: tuple[Any, ...] = ()  # faults.Fault: injected LLM failures (see faults.py)
    # Full GET /api/2.0/serving-endpoints/{name} answers by name (see serving_api.py).
    serving_endpoints: dict[str, Any] | None = None
    # Serving endpoints that answer as an MLflow LLM judge, with a verdict (see judges.py).
    judge_endpoints: tuple[str, ...] = ()
    # Sub-agents: endpoint names and apps/<name> that answer the Responses API (subagents_api.py).
    subagents: tuple[str, ...] = ()
    # Managed MCP servers that answer 503, by kind, and tools whose calls fail (mcp_api.py).
    mcp_down: tuple[str, ...] = ()
    mcp_failing: tuple[str, ...] = ()
    mcp_delay: float = 0.0  # seconds a managed MCP tool call takes before it answers
    # Lakebase: the PostgreSQL host of every instance ("" = no instance), and the password
    # each credential carries (lakebase_api.py).
    lakebase_host: str = ""
    lakebase_token: str = "lakebase-fake-credential"
    # Genie spaces (GET /api/2.0/genie/spaces/{id}): every id exists, on this SQL warehouse,
    # except these.
    genie_warehouse_id: str = "a1b2c3d4e5f60718"
    genie_spaces_missing: tuple[str, ...] = ()
    # Who the token belongs to, as SCIM `Me` answers: "user" or "service_principal".
    identity: str = "user"
    # The userName SCIM `Me` answers instead of the identity's own (the Postgres role
    # databricks-langchain then connects as); "" keeps the identity's.
    user_name: str = ""
    # The MLflow tracking store (traces_api.py): an HTTP error status every call under its
    # prefixes answers (None: none), and seconds each such call waits before answering.
    tracking_status: int | None = None
    tracking_delay: float = 0.0
    # The list routes (listings_api.py): items by kind (None: its defaults), kinds that answer
    # 403, and items per page (0: all in one).
    listings: dict[str, list[dict[str, Any]]] | None = None
    listings_forbidden: tuple[str, ...] = ()
    page_size: int = 0

    def updated(self, **changes: Any) -> Settings:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        if changes.get("endpoints") is not None:
            changes["endpoints"] = frozenset(changes["endpoints"])
        if "genie_spaces_missing" in changes:
            changes["genie_spaces_missing"] = tuple(changes["genie_spaces_missing"])
        if "listings_forbidden" in changes:
            changes["listings_forbidden"] = tuple(changes["listings_forbidden"])
        if "user_tokens" in changes:
            changes["user_tokens"] = tuple(changes["user_tokens"])
        if "faults" in changes:
            from .faults import parse_faults  # faults imports this module

            changes["faults"] = parse_faults(changes["faults"])
        new = dataclasses.replace(self, **changes)
        if new.tokens is not None and (not isinstance(new.tokens, int) or new.tokens < 0):
            raise ValueError("tokens must be None or an int >= 0")
        if not isinstance(new.token_delay, int | float) or new.token_delay < 0:
            raise ValueError("token_delay must be a number >= 0")
        if new.identity not in IDENTITIES:
            raise ValueError(f"identity must be one of {sorted(IDENTITIES)}")
        return new

    def as_json(self) -> dict[str, Any]:
        endpoints = None if self.endpoints is None else sorted(self.endpoints)
        return {**dataclasses.asdict(self), "endpoints": endpoints}


@dataclass(frozen=True)
class Call:
    """Everything a handler gets: the request, its parsed body, path parameters and settings."""

    request: Request
    body: Any
    params: dict[str, str]
    settings: Settings
    fake: FakeWorkspace

    @property
    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")

    async def pause(self, seconds: float) -> bool:
        """Sleep, in slices so that stop() is not held up; False once the fake is stopping."""
        deadline = time.monotonic() + seconds
        while not self.fake.stopping and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.1))
        return not self.fake.stopping


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool


ROUTES: list[Route] = []


def route(method: str, path: str, *, auth: bool = True) -> Callable[[Handler], Handler]:
    """Register a handler for `method` and `path`; `{name}` in the path matches one segment."""
    parts = re.split(r"\{(\w+)\}", path)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method.upper(), re.compile(regex), handler, auth))
        return handler

    return register


def error(status: int, error_code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": error_code, "message": message}, status_code=status)


def _authorized(request: Request, settings: Settings) -> bool:
    accepted = (settings.token, *settings.user_tokens)
    return request.headers.get("authorization") in {f"Bearer {token}" for token in accepted}


def endpoint_exists(settings: Settings, name: str) -> bool:
    return settings.endpoints is None or name in settings.endpoints


def no_such_endpoint(name: str) -> JSONResponse:
    message = f"The given endpoint does not exist, please retry after checking the name: {name}"
    return error(404, "RESOURCE_DOES_NOT_EXIST", message)


async def dispatch(call: Call) -> Response:
    method, path = call.request.method, call.request.url.path
    for candidate in ROUTES:
        match = candidate.pattern.fullmatch(path)
        if match is None or candidate.method != method:
            continue
        if candidate.auth and not _authorized(call.request, call.settings):
            return error(401, "UNAUTHENTICATED", "Invalid access token.")
        return await candidate.handler(dataclasses.replace(call, params=match.groupdict()))
    return error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
