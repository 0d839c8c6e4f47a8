"""An offline fake Databricks workspace, served on 127.0.0.1 for tests, demos and benchmarks.

It answers what the real clients (databricks-sdk, databricks-openai, databricks-langchain and
the OpenAI client) call, with a deterministic "LLM" behind the OpenAI-compatible chat
completions endpoint.

In-process use::

    with FakeWorkspace(tokens=50, token_delay=0.02) as fake:
        for key in ENV_KEYS_TO_REMOVE:
            os.environ.pop(key, None)
        os.environ.update(fake.env())
        ...  # build Databricks clients only now: the SDK contacts the host when constructed

As its own process (from the project root)::

    python -m tests.fake_workspace [--host 127.0.0.1] [--port 0] [--tokens N] [--token-delay S]

prints ``FAKE_WORKSPACE_URL=http://127.0.0.1:PORT`` once listening and serves until SIGINT or
SIGTERM. Such a fake is reconfigured and inspected through its admin API, which is not
recorded and needs no token:

- ``POST /__fake__/config`` with JSON settings (as ``configure()``); ``GET`` shows them;
- ``GET /__fake__/requests`` lists the recorded requests; ``DELETE`` clears them.

Routes are small handler functions registered in ``ROUTES`` with the ``@route`` decorator;
the "LLM" is the pure function ``llm_reply()``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

DEFAULT_TOKEN = "dapi-fake-token"
WORKSPACE_ID = "1234567890123456"
FAKE_USER = {
    "id": "4242424242424242",
    "userName": "tester@example.com",
    "displayName": "Tester",
    "active": True,
}
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

_MISSING_CONFIG_FILE = os.path.join(
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
    token: str = DEFAULT_TOKEN  # the only accepted bearer token

    def updated(self, **changes: Any) -> Settings:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        if changes.get("endpoints") is not None:
            changes["endpoints"] = frozenset(changes["endpoints"])
        new = dataclasses.replace(self, **changes)
        if new.tokens is not None and (not isinstance(new.tokens, int) or new.tokens < 0):
            raise ValueError("tokens must be None or an int >= 0")
        if not isinstance(new.token_delay, int | float) or new.token_delay < 0:
            raise ValueError("token_delay must be a number >= 0")
        return new

    def as_json(self) -> dict[str, Any]:
        endpoints = None if self.endpoints is None else sorted(self.endpoints)
        return {**dataclasses.asdict(self), "endpoints": endpoints}


# --- The deterministic "LLM" -------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as in the OpenAI API


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text") or "")
            for part in content
            if isinstance(part, str | dict)
        )
    return ""


def llm_reply(messages: list[Mapping[str, Any]], tools: list[Any] | None = None) -> Reply:
    """The fake model: echo the user, call a tool named in the prompt, or report a tool result.

    - last message is a tool result -> "The tool said: <its content>";
    - a tool's function name appears as a word in the last user message -> one call to the
      earliest-named tool, its arguments the first JSON object after the name (else {});
    - otherwise -> "You said: <last user message>".
    """
    if messages and messages[-1].get("role") == "tool":
        return Reply(text=f"The tool said: {message_text(messages[-1])}")
    text = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    call = _find_tool_call(text, tools or [])
    if call is not None:
        return Reply(tool_calls=(call,))
    return Reply(text=f"You said: {text}")


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return ""
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) else ""


def _find_tool_call(text: str, tools: list[Any]) -> ToolCall | None:
    best: tuple[int, int, str] | None = None  # (position, -length, name): earliest, then longest
    for name in filter(None, map(_tool_name, tools)):
        match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text)
        if match and (best is None or (match.start(), -len(name), name) < best):
            best = (match.start(), -len(name), name)
    if best is None:
        return None
    position, _, name = best
    arguments = _first_json_object(text, position + len(name))
    call_id = "call_" + hashlib.sha1((name + text).encode()).hexdigest()[:12]
    return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))


def _first_json_object(text: str, start: int) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    position = text.find("{", start)
    while position != -1:
        try:
            value, _ = decoder.raw_decode(text, position)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        position = text.find("{", position + 1)
    return {}


_TOKEN_RE = re.compile(r"^\s+|\S+\s*")


def split_tokens(text: str, count: int | None = None) -> list[str]:
    """Word tokens that keep their following whitespace (so "".join() gives the text back).

    With a count, exactly that many: the words (truncated) then FILLER_TOKEN padding.
    """
    words = _TOKEN_RE.findall(text)
    if count is None:
        return words
    return words[:count] + [FILLER_TOKEN] * max(0, count - len(words))


# --- Routing -------------------------------------------------------------------------------


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
    return request.headers.get("authorization") == f"Bearer {settings.token}"


def _endpoint_exists(settings: Settings, name: str) -> bool:
    return settings.endpoints is None or name in settings.endpoints


def _no_such_endpoint(name: str) -> JSONResponse:
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


# --- Workspace routes ----------------------------------------------------------------------


@route("GET", "/.well-known/databricks-config", auth=False)
async def host_metadata(call: Call) -> Response:
    # Parsed by databricks.sdk.oauth.HostMetadata.from_dict (cloud is case-insensitive).
    return JSONResponse(
        {"oidc_endpoint": f"{call.base_url}/oidc", "workspace_id": WORKSPACE_ID, "cloud": "aws"}
    )


@route("GET", "/api/2.0/preview/scim/v2/Me")
async def current_user(call: Call) -> Response:
    return JSONResponse(FAKE_USER)


@route("GET", "/api/2.0/serving-endpoints/{name}")
async def get_serving_endpoint(call: Call) -> Response:
    name = call.params["name"]
    if not _endpoint_exists(call.settings, name):
        return _no_such_endpoint(name)
    entity = {"name": name, "entity_name": name, "foundation_model": {"name": name}}
    return JSONResponse(
        {
            "name": name,
            "id": hashlib.sha1(name.encode()).hexdigest()[:32],
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": {"served_entities": [entity]},
            "task": "llm/v1/chat",
            "endpoint_type": "FOUNDATION_MODEL_API",
        }
    )


@route("POST", "/serving-endpoints/chat/completions")
async def chat_completions(call: Call) -> Response:
    model = call.body.get("model") if isinstance(call.body, dict) else None
    return await _chat(call, model)


@route("POST", "/serving-endpoints/{name}/invocations")
async def invocations(call: Call) -> Response:
    return await _chat(call, call.params["name"])


async def _chat(call: Call, model: Any) -> Response:
    body = call.body if isinstance(call.body, dict) else {}
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return error(400, "INVALID_PARAMETER_VALUE", "'messages' must be a list of objects")
    if not isinstance(model, str) or not model:
        return error(400, "INVALID_PARAMETER_VALUE", "'model' is required")
    if not _endpoint_exists(call.settings, model):
        return _no_such_endpoint(model)

    reply = llm_reply(messages, body.get("tools"))
    tokens = [] if reply.tool_calls else split_tokens(reply.text, call.settings.tokens)
    prompt_tokens = sum(len(split_tokens(message_text(m))) for m in messages)
    completion_tokens = len(tokens) + len(reply.tool_calls)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    digest = hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    head = {"id": f"chatcmpl-{digest[:24]}", "created": int(time.time()), "model": model}
    delay = call.settings.token_delay

    if body.get("stream"):
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        chunks = _stream_chunks(head, reply, tokens, delay, usage if include_usage else None)
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    if delay:
        await asyncio.sleep(delay * completion_tokens)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens) or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    choice = {"index": 0, "message": message, "finish_reason": _finish_reason(reply)}
    return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


async def _stream_chunks(
    head: dict[str, Any],
    reply: Reply,
    tokens: list[str],
    delay: float,
    usage: dict[str, int] | None,
) -> AsyncIterator[str]:
    """OpenAI `chat.completion.chunk` server-sent events, ending with `data: [DONE]`."""

    def event(delta: dict[str, Any] | None, finish_reason: str | None = None) -> str:
        chunk: dict[str, Any] = {**head, "object": "chat.completion.chunk", "choices": []}
        if delta is None:
            chunk["usage"] = usage
        else:
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"

    yield event({"role": "assistant", "content": ""})
    for token in tokens:
        if delay:
            await asyncio.sleep(delay)
        yield event({"content": token})
    for index, call in enumerate(reply.tool_calls):
        if delay:
            await asyncio.sleep(delay)
        opening = {"index": index, "id": call.id, "type": "function"}
        yield event({"tool_calls": [{**opening, "function": {"name": call.name, "arguments": ""}}]})
        yield event({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]})
    yield event({}, _finish_reason(reply))
    if usage is not None:
        yield event(None)
    yield "data: [DONE]\n\n"


# --- Admin routes (not recorded, no token) ----------------------------------------------


@route("GET", "/__fake__/config", auth=False)
async def admin_get_config(call: Call) -> Response:
    return JSONResponse(call.fake.settings.as_json())


@route("POST", "/__fake__/config", auth=False)
async def admin_configure(call: Call) -> Response:
    if not isinstance(call.body, dict):
        return error(400, "INVALID_PARAMETER_VALUE", "expected a JSON object of settings")
    try:
        call.fake.configure(**call.body)
    except (TypeError, ValueError) as e:
        return error(400, "INVALID_PARAMETER_VALUE", str(e))
    return JSONResponse(call.fake.settings.as_json())


@route("GET", "/__fake__/requests", auth=False)
async def admin_requests(call: Call) -> Response:
    return JSONResponse([dataclasses.asdict(r) for r in call.fake.requests])


@route("DELETE", "/__fake__/requests", auth=False)
async def admin_clear_requests(call: Call) -> Response:
    call.fake.clear_requests()
    return JSONResponse({})


# --- Server --------------------------------------------------------------------------------


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class _App:
    """The ASGI application: record the request, then dispatch it through ROUTES."""

    def __init__(self, fake: FakeWorkspace) -> None:
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = _parse_body(await request.body())
        path = request.url.path
        if not path.startswith(ADMIN_PREFIX):
            query = scope.get("query_string", b"").decode("latin-1")
            self.fake._record(
                RecordedRequest(request.method, path, query, dict(request.headers), body)
            )
        call = Call(request, body, {}, self.fake.settings, self.fake)
        response = await dispatch(call)
        await response(scope, receive, send)


class FakeWorkspace:
    """A fake Databricks workspace served by uvicorn in a daemon thread (see the module doc)."""

    def __init__(
        self,
        *,
        tokens: int | None = None,
        token_delay: float = 0.0,
        endpoints: set[str] | None = None,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._settings = Settings().updated(
            tokens=tokens, token_delay=token_delay, endpoints=endpoints, token=token
        )
        self._requests: list[RecordedRequest] = []
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> FakeWorkspace:
        """Serve in a background thread; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("FakeWorkspace is already started")
        sock = socket.create_server((self._host, self._port), backlog=2048)
        port = sock.getsockname()[1]
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        config = uvicorn.Config(
            _App(self),
            interface="asgi3",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",
            backlog=2048,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-workspace", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError(f"fake workspace did not start on {self.url}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)

    def __enter__(self) -> FakeWorkspace:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    def configure(self, **settings: Any) -> None:
        """Change `tokens`, `token_delay`, `endpoints` (or `token`); applies to new requests."""
        with self._lock:
            self._settings = self._settings.updated(**settings)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def env(self) -> dict[str, str]:
        """Variables that point every Databricks client at this fake.

        Also REMOVE the ENV_KEYS_TO_REMOVE from the environment (setting them to "" is not
        enough), or use environ().
        """
        return {
            "DATABRICKS_HOST": self.url,
            "DATABRICKS_TOKEN": self.settings.token,
            "DATABRICKS_CONFIG_FILE": _MISSING_CONFIG_FILE,
        }

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) without ENV_KEYS_TO_REMOVE, plus env(): for subprocesses."""
        result = {k: v for k, v in (os.environ if base is None else base).items()}
        for key in ENV_KEYS_TO_REMOVE:
            result.pop(key, None)
        return {**result, **self.env()}


# --- Command line --------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve an offline fake Databricks workspace.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=None, help="content chunks per answer")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per token")
    args = parser.parse_args(None if argv is None else list(argv))

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fake = FakeWorkspace(
        tokens=args.tokens, token_delay=args.token_delay, host=args.host, port=args.port
    )
    with fake:
        print(f"FAKE_WORKSPACE_URL={fake.url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
