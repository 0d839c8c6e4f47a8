"""Checks requests to the agent routes before mlflow sees them, and answers known failures.

An ASGI middleware in front of mlflow's agent server that:
- answers a request it cannot take with a 4xx and a reason, before any agent code runs (mlflow
  answers a JSON array with a bare 500, reads bodies of any size and waits for a slow body
  forever). The rules, and why:
  - 413: the body is larger than AGENT_MAX_BODY_BYTES (default 4 MiB);
  - 408: the body did not arrive within AGENT_BODY_TIMEOUT_SECONDS (default 30 s);
  - 415: a Content-Type other than JSON (none at all is taken as JSON), or a Content-Encoding
    (compressed bodies would bypass the size limit);
  - 400: not JSON, not UTF-8, or not a JSON object; NaN or Infinity (not JSON, though Python
    reads them); a number too large for a float; a key given twice (parsers disagree on which
    one wins); nesting deeper than AGENT_MAX_JSON_DEPTH (default 32); a NUL character or an
    unpaired surrogate in a string (no UTF-8 encoding, or not storable as text); `stream` that
    is not true or false (mlflow would stream for "no"); `input` that is not a non-empty list
    of objects; a content part of unknown type (mlflow would read it as text); `custom_inputs`
    or `context` that is not an object. The rest of the Responses request (roles, item
    types, ...) is checked by mlflow, also with a 400.
  - Accepted on purpose: unknown top-level keys (ignored, as by mlflow) and any keys inside
    `custom_inputs`, which belongs to the agent: only the agent knows what it reads there.
- accepts the older chat-style body, {"messages": [...], "stream": ...}, by passing its messages
  on as the Responses "input";
- answers an AgentError reported by a handler with its own status code and message, where mlflow
  would answer 500, and redacts secrets from every error body (see redaction.py).
Errors use FastAPI's shape, {"detail": "..."}, like mlflow's own 4xx answers.
"""

import asyncio
import json
import math
import os
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from agent_server.runtime.errors import AgentError
from agent_server.runtime.identity import IdentityError, check_request
from agent_server.runtime.redaction import redact

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AGENT_PATHS = frozenset({"/invocations", "/responses"})
MAX_BODY_BYTES = int(os.environ.get("AGENT_MAX_BODY_BYTES", str(4 * 1024 * 1024)))
BODY_TIMEOUT_SECONDS = float(os.environ.get("AGENT_BODY_TIMEOUT_SECONDS", "30"))
MAX_JSON_DEPTH = int(os.environ.get("AGENT_MAX_JSON_DEPTH", "32"))
# Content part types of the Responses API (mlflow would take an unknown part for text).
CONTENT_PART_TYPES = frozenset(
    {"input_text", "input_image", "input_file", "output_text", "refusal"}
)

_request_errors: ContextVar[list[AgentError] | None] = ContextVar("request_errors", default=None)


def report_error(error: AgentError) -> None:
    """Record an AgentError of the current request, to be answered with its status code."""
    errors = _request_errors.get()
    if errors is not None:
        errors.append(error)


class RequestRejected(Exception):
    def __init__(self, status_code: int, detail: str, *, close: bool = False) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.close = close  # the body was not read to its end: the connection cannot be reused


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
            body = _normalized_body(body, _headers(scope))
        except RequestRejected as rejected:
            await send_json(
                send, rejected.status_code, {"detail": rejected.detail}, close=rejected.close
            )
            return

        errors: list[AgentError] = []
        token = _request_errors.set(errors)
        try:
            await self.app(
                with_length(scope, len(body)),
                replay_body(body, receive),
                _map_errors(send, errors),
            )
        finally:
            _request_errors.reset(token)


def _check_content_type(scope: Scope) -> None:
    encoding = (_header(scope, b"content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise RequestRejected(
            415, f"Unsupported Content-Encoding {encoding!r}: send the JSON body uncompressed."
        )
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
        close=True,
    )
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestRejected(
                        400, "The client disconnected before sending the whole body."
                    )
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise too_large
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise RequestRejected(
            408,
            f"The request body did not arrive within {BODY_TIMEOUT_SECONDS:g} s "
            "(AGENT_BODY_TIMEOUT_SECONDS).",
            close=True,
        ) from None


def _normalized_body(body: bytes, headers: dict[str, str]) -> bytes:
    """The body to hand to mlflow: checked as described above, chat-style messages converted."""
    if not body.strip():
        raise RequestRejected(400, "Request body is empty: send a JSON object with an 'input'.")
    data = parse_json(body)
    if not isinstance(data, dict):
        raise RequestRejected(
            400,
            f"Request body must be a JSON object with an 'input' list, not {_json_type(data)}.",
        )
    converted = "input" not in data and "messages" in data
    if converted:
        data["input"] = data.pop("messages")
    _check_fields(data)
    try:
        check_request(headers, data)
    except IdentityError as refused:
        raise RequestRejected(refused.status_code, refused.detail) from None
    return json.dumps(data).encode() if converted else body


def parse_json(body: bytes) -> Any:
    """Strict JSON: RFC 8259 plus the limits above; RequestRejected (400) for anything else."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRejected(400, f"Invalid JSON in request body: not UTF-8 ({exc})") from None
    try:
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise RequestRejected(400, _too_deep()) from None
    except ValueError as exc:
        raise RequestRejected(400, f"Invalid JSON in request body: {exc}") from None
    _check_values(data)
    return data


def _reject_constant(name: str) -> Any:
    raise RequestRejected(400, f"Invalid JSON in request body: {name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise RequestRejected(400, f"Invalid JSON in request body: {text[:40]} is too large.")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RequestRejected(
                400, f"Invalid JSON in request body: the key {key[:100]!r} appears twice."
            )
        result[key] = value
    return result


def _too_deep() -> str:
    return f"Request body is nested too deeply (more than {MAX_JSON_DEPTH} levels)."


def _check_values(data: Any) -> None:
    """Depth and string checks, without recursion (the body is untrusted)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise RequestRejected(400, _too_deep())
            if isinstance(value, dict):
                for key in value:
                    _check_string(key)
                items = value.values()
            else:
                items = value
            stack.extend((item, depth + 1) for item in items if isinstance(item, str | dict | list))


def _check_string(text: str) -> None:
    if "\0" in text:
        raise RequestRejected(400, "Request body contains a NUL character (\\u0000) in a string.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestRejected(
            400, "Request body contains an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape)."
        ) from None


def _check_fields(data: dict[str, Any]) -> None:
    if "stream" in data and not isinstance(data["stream"], bool):
        raise RequestRejected(
            400, f"'stream' must be true or false, not {_json_type(data['stream'])}."
        )
    if "input" not in data:
        raise RequestRejected(
            400, "Request body has no 'input', the list of messages (role and content)."
        )
    items = data["input"]
    if not isinstance(items, list):
        raise RequestRejected(400, f"'input' must be a list of messages, not {_json_type(items)}.")
    if not items:
        raise RequestRejected(400, "'input' is empty: send at least one message.")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestRejected(
                400, f"'input[{index}]' must be a message object, not {_json_type(item)}."
            )
        content = item.get("content")
        for part_index, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in CONTENT_PART_TYPES:
                raise RequestRejected(
                    400,
                    f"'input[{index}].content[{part_index}]' must be a content part with a type "
                    f"in {sorted(CONTENT_PART_TYPES)}, not {str(kind)[:100]!r}.",
                )
    for name in ("custom_inputs", "context"):
        value = data.get(name)
        if value is not None and not isinstance(value, dict):
            raise RequestRejected(400, f"'{name}' must be an object, not {_json_type(value)}.")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, names in lowercase; of a repeated header its first value, as in
    the headers mlflow hands to the agent (`get_request_headers`)."""
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def with_length(scope: Scope, length: int) -> Scope:
    """`scope` with its Content-Length header set to `length`."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}


def replay_body(body: bytes, receive: Receive) -> Receive:
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
    """A send that answers a reported AgentError with its status, and redacts error bodies.

    mlflow answers every handler exception with 500 and `{"detail": str(exc)}`; the reported
    AgentError says which status fits. Other error answers (mlflow's 4xx, which can quote the
    request) are passed on with secrets redacted.
    """
    replaced = False
    held: Message | None = None  # the start of an error answer, sent with its redacted body
    parts: list[bytes] = []

    async def mapped(message: Message) -> None:
        nonlocal replaced, held
        if replaced:
            return
        if message["type"] == "http.response.start":
            if message["status"] == 500 and errors:
                replaced = True
                error = errors[-1]
                await send_json(send, error.status_code, {"detail": str(error)})
                return
            if message["status"] >= 400:
                held = message
                return
        elif message["type"] == "http.response.body" and held is not None:
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = redact(b"".join(parts).decode("utf-8", errors="replace")).encode()
            headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            start, held = {**held, "headers": headers}, None
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return mapped


async def send_json(
    send: Send, status: int, payload: dict[str, Any], *, close: bool = False
) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
