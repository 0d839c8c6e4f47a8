"""Small fake agent servers, each failing one way, for the tests of `test-agent` and `preflight`.

`serving(app)` runs a Starlette app on 127.0.0.1 in a thread and yields its URL. The apps
answer like the agent server (GET /health, POST /invocations with and without streaming) and
record the bodies they receive.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

GOOD_TOKEN = "fake-app-oauth-token-42"
Invocation = Callable[[dict[str, Any]], Response]


def answer_item(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_fake",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def sse(events: list[Any]) -> StreamingResponse:
    """An event stream of `events` (JSON, or raw strings such as "[DONE]")."""

    async def lines() -> AsyncIterator[str]:
        for event in events:
            yield f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream")


def echo(body: dict[str, Any]) -> Response:
    """A well-behaved agent: echoes the last message, streaming or not."""
    messages = body.get("input") or body.get("messages") or [{}]
    text = f"Echo: {messages[-1].get('content', '')}"
    if not body.get("stream"):
        return JSONResponse({"output": [answer_item(text)]})
    deltas = [
        {"type": "response.output_text.delta", "item_id": "msg_fake", "delta": word + " "}
        for word in text.split()
    ]
    done = {"type": "response.output_item.done", "item": answer_item(text)}
    return sse([*deltas, done, "[DONE]"])


def server_error(body: dict[str, Any]) -> Response:
    return JSONResponse({"detail": "the agent crashed: KeyError 'session'"}, status_code=500)


def error_mid_stream(body: dict[str, Any]) -> Response:
    if not body.get("stream"):
        return echo(body)
    delta = {"type": "response.output_text.delta", "item_id": "msg_fake", "delta": "Hel"}
    return sse([delta, {"error": "the LLM endpoint answered 429: rate limited"}, "[DONE]"])


def stream_without_done(body: dict[str, Any]) -> Response:
    if not body.get("stream"):
        return echo(body)
    delta = {"type": "response.output_text.delta", "item_id": "msg_fake", "delta": "Hel"}
    return sse([delta, delta])


def stream_not_json(body: dict[str, Any]) -> Response:
    if not body.get("stream"):
        return echo(body)
    return sse(["<html>Bad gateway</html>"])


class FakeAgent:
    """An agent app: `invocation` answers /invocations; `auth` protects every route."""

    def __init__(self, invocation: Invocation = echo, auth: str | None = None) -> None:
        self.invocation = invocation
        self.auth = auth  # None; "token": 401 without GOOD_TOKEN; "redirect": 302 to a login
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/invocations", self.invocations, methods=["POST"]),
            ]
        )

    def _refused(self, request: Request) -> Response | None:
        authorization = request.headers.get("authorization")
        self.authorizations.append(authorization)
        if self.auth is None or authorization == f"Bearer {GOOD_TOKEN}":
            return None
        if self.auth == "redirect":
            return RedirectResponse(
                "https://example.cloud.databricks.com/oidc/oauth2/v2.0/authorize?client_id=x",
                status_code=302,
            )
        return JSONResponse(
            {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}, status_code=401
        )

    async def health(self, request: Request) -> Response:
        return self._refused(request) or JSONResponse({"status": "healthy"})

    async def invocations(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        body = await request.json()
        self.bodies.append(body)
        return self.invocation(body)


@contextlib.contextmanager
def serving(agent: FakeAgent) -> Iterator[str]:
    """Serve `agent` on a free port of 127.0.0.1; yields its URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(agent.app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake agent did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
