"""Checks requests to the agent routes before mlflow sees them, and answers known failures.

An ASGI middleware in front of mlflow's agent server that:
- answers a body that is too large, not JSON, or not a JSON object with a 4xx and a reason
  (mlflow answers a JSON array with a bare 500 and reads bodies of any size);
- accepts the older chat-style body, {"messages": [...], "stream": ...}, by passing its messages
  on as the Responses "input";
- answers an AgentError raised by a handler with its own status code and message, where mlflow
  would answer 500.
Errors use FastAPI's shape, {"detail": "..."}, like mlflow's own 4xx answers.
"""

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from agent_server.errors import AgentError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AGENT_PATHS = frozenset({"/invocations", "/responses"})
MAX_BODY_BYTES = int(os.environ.get("AGENT_MAX_BODY_BYTES", str(4 * 1024 * 1024)))

_request_errors: ContextVar[list[AgentError] | None] = ContextVar("request_errors", default=None)


def report_error(error: AgentError) -> None:
    """Record an AgentError of the current request, to be answered with its status code."""
    errors = _request_errors.get()
    if errors is not None:
        errors.append(error)


class RequestRejected(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in AGENT_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            _check_content_type(scope)
            body = await _read_body(scope, receive)
            body = _normalized_body(body)
        except RequestRejected as rejected:
            await send_json(send, rejected.status_code, {"detail": rejected.detail})
            return

        errors: list[AgentError] = []
        token = _request_errors.set(errors)
        try:
            await self.app(
                _with_length(scope, len(body)), _replay(body, receive), _map_errors(send, errors)
            )
        finally:
            _request_errors.reset(token)


def _check_content_type(scope: Scope) -> None:
    content_type = _header(scope, b"content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise RequestRejected(
            415, f"Unsupported content type {media_type!r}: send Content-Type: application/json."
        )


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    too_large = RequestRejected(
        413,
        f"Request body is larger than the limit of {MAX_BODY_BYTES} bytes (AGENT_MAX_BODY_BYTES).",
    )
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestRejected(400, "The client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _normalized_body(body: bytes) -> bytes:
    """The body to hand to mlflow: checked to be a JSON object, chat-style messages converted."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise RequestRejected(400, "Request body is nested too deeply.") from None
    except ValueError as exc:  # includes invalid UTF-8 (UnicodeDecodeError)
        raise RequestRejected(400, f"Invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise RequestRejected(
            400,
            f"Request body must be a JSON object with an 'input' list, not {type(data).__name__}.",
        )
    if "input" not in data and "messages" in data:
        data["input"] = data.pop("messages")
        return json.dumps(data).encode()
    return body


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _with_length(scope: Scope, length: int) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the body once, then passes on the client's disconnect."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _map_errors(send: Send, errors: list[AgentError]) -> Send:
    """A send that turns mlflow's 500 for a reported AgentError into that error's answer."""
    replaced = False

    async def mapped(message: Message) -> None:
        nonlocal replaced
        if replaced:
            return
        if message["type"] == "http.response.start" and message["status"] == 500 and errors:
            replaced = True
            error = errors[-1]
            await send_json(send, error.status_code, {"detail": str(error)})
            return
        await send(message)

    return mapped


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
