"""Background mode: answers that outlive the request that asked for them.

Databricks Apps' proxy ends a request after about 120 s (a stream after about 300 s), so an agent
that works longer would lose its answer. With `"background": true` in a `POST /responses` body the
server answers at once with the run's id, in the Responses API's shape
(`{"id": ..., "object": "response", "status": "in_progress"}`), and runs the agent's @stream
handler on its own, whoever is still connected (a request that mlflow refuses is answered with
its 4xx, and no run is kept):
- `GET /responses/{id}`: the run's state; once it ended, its `output` (status `completed`) or its
  `error` (status `failed`);
- `POST /responses/{id}/cancel`: stops the run (status `cancelled`); an ended run stays as it
  ended;
- `GET /responses/{id}?stream=true&starting_after=N`: the run's stream events after sequence number
  N (all of them without N), then the new ones as they come, until the run ends (`data: [DONE]`).
  A client whose connection broke reconnects with the last `sequence_number` it read and loses
  nothing. The first event is `response.created`, the last `response.completed`,
  `response.failed` or `response.cancelled`, each with the run as a response object.
- `POST /responses` with both `background` and `stream` true: the run's stream from its start.

A run belongs to the user who started it (identity.py: deployed, the proxy's signed-in user): for
anyone else its id is unknown (404), as is an id that never existed or has expired.

Bounds: a run that takes longer than AGENT_BACKGROUND_TIMEOUT_SECONDS (default 3600) is stopped and
fails; an ended run is kept for AGENT_BACKGROUND_KEEP_SECONDS (default 3600); the process keeps at
most AGENT_BACKGROUND_MAX_RUNS runs (default 100), dropping the oldest ended run for a new one, and
refuses a new run with 429 when all of them are still running.

Runs are kept in this process's memory only: a restart or a redeploy loses them, and with several
uvicorn workers a run is known only to the worker that started it. databricks-ai-bridge's
LongRunningAgentServer keeps runs in a database instead, but it runs background mode only when
that database is configured (its own settings, its own fixed schema), replaces mlflow's request
handling by subclassing its AgentServer, and serves any run to whoever has its id; so the project
keeps its own store (RunStore), beside which a persistent one can be added.
"""

import asyncio
import itertools
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from agent_server.runtime.identity import proxy_user
from agent_server.runtime.request_guard import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    parse_json,
    replay_body,
    send_json,
    with_length,
)

logger = logging.getLogger(__name__)

MAX_RUNS = int(os.environ.get("AGENT_BACKGROUND_MAX_RUNS", "100"))
TIMEOUT_SECONDS = float(os.environ.get("AGENT_BACKGROUND_TIMEOUT_SECONDS", "3600"))
KEEP_SECONDS = float(os.environ.get("AGENT_BACKGROUND_KEEP_SECONDS", "3600"))

RUN_PATH = re.compile(r"^/responses/(?P<id>[^/]+)$")
CANCEL_PATH = re.compile(r"^/responses/(?P<id>[^/]+)/cancel$")


@dataclass
class Run:
    """One background run: its owner, its stream events (numbered from 0) and its outcome."""

    id: str
    owner: str | None
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "queued"
    error: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    ended_at: float | None = None  # time.monotonic() when it ended
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task[None] | None = None
    cancelled: bool = False  # its user cancelled it

    def response(self) -> dict[str, Any]:
        """The run as a Responses API response object."""
        output = [
            event["item"]
            for event in self.events
            if event.get("type") == "response.output_item.done" and event.get("item")
        ]
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": True,
            "error": self.error,
            "output": output,
        }

    async def record(self, event: dict[str, Any]) -> None:
        """Append `event` with the next sequence number, and wake the readers."""
        self.events.append({**event, "sequence_number": len(self.events)})
        async with self.changed:
            self.changed.notify_all()

    async def end(self, error: dict[str, Any] | None) -> None:
        if self.cancelled:
            self.status, self.error = "cancelled", None
        else:
            self.status, self.error = ("failed", error) if error else ("completed", None)
        kind = f"response.{self.status}"
        self.events.append(
            {"type": kind, "response": self.response(), "sequence_number": len(self.events)}
        )
        # Readers stop at the end once they have every event: the last one is in first.
        self.ended_at = time.monotonic()
        async with self.changed:
            self.changed.notify_all()


class RunLimitError(Exception):
    """Every run the process may keep is still running."""


class RunStore:
    """The runs of this process, in memory, bounded in count and lifetime."""

    def __init__(self, max_runs: int = MAX_RUNS, keep_seconds: float = KEEP_SECONDS) -> None:
        self.max_runs = max_runs
        self.keep_seconds = keep_seconds
        self._runs: dict[str, Run] = {}

    def add(self, owner: str | None) -> Run:
        self._drop_expired()
        if len(self._runs) >= self.max_runs:
            ended = [run for run in self._runs.values() if run.ended_at is not None]
            if not ended:
                raise RunLimitError(
                    f"{len(self._runs)} background responses are running, the most this server "
                    "keeps (AGENT_BACKGROUND_MAX_RUNS): try again when one has ended."
                )
            del self._runs[min(ended, key=lambda run: run.ended_at or 0.0).id]
        run = Run(id=f"resp_{secrets.token_hex(16)}", owner=owner)
        self._runs[run.id] = run
        return run

    def get(self, run_id: str, owner: str | None) -> Run | None:
        """The run with this id if `owner` started it; None for any other caller."""
        self._drop_expired()
        run = self._runs.get(run_id)
        return run if run is not None and run.owner == owner else None

    def discard(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def running(self) -> list[Run]:
        return [run for run in self._runs.values() if run.ended_at is None]

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for run in list(self._runs.values()):
            if run.ended_at is not None and now - run.ended_at > self.keep_seconds:
                del self._runs[run.id]


_store = RunStore()


class BackgroundRuns:
    """ASGI middleware, inside the request guard: starts background runs and serves their reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            if match := RUN_PATH.match(scope["path"]):
                await _read_run(match["id"], scope, receive, send)
                return
        if scope["type"] == "http" and scope["method"] == "POST":
            if match := CANCEL_PATH.match(scope["path"]):
                await _cancel_run(match["id"], scope, send)
                return
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in {"/responses", "/invocations"}
        ):
            await self.app(scope, receive, send)
            return
        # The request guard has read and checked the body: it arrives here in one message.
        body = (await receive()).get("body", b"")
        data = parse_json(body)
        background = data.get("background", False)
        if not isinstance(background, bool):
            await send_json(send, 400, {"detail": "'background' must be true or false."})
        elif not background:
            await self.app(scope, replay_body(body, receive), send)
        elif scope["path"] != "/responses":
            detail = "Background mode is served at POST /responses, not /invocations."
            await send_json(send, 400, {"detail": detail})
        else:
            await self._start(data, scope, receive, send)

    async def _start(
        self, data: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            run = _store.add(_owner(scope))
        except RunLimitError as full:
            await send_json(send, 429, {"detail": str(full)})
            return
        await run.record({"type": "response.created", "response": run.response()})
        stream = data.pop("stream", False)
        data.pop("background")
        request = json.dumps({**data, "stream": True}).encode()
        reader = _EventReader(run)
        run.task = asyncio.get_running_loop().create_task(self._drive(run, scope, request, reader))
        # The answer waits for mlflow to accept the request, so that a request it refuses (a
        # role it does not know, ...) gets its 4xx here, as without background mode.
        await asyncio.wait({reader.accepted, run.task}, return_when=asyncio.FIRST_COMPLETED)
        if not (reader.accepted.done() and reader.accepted.result()):
            await asyncio.gather(run.task, return_exceptions=True)
            _store.discard(run.id)
            status = reader.status if reader.status >= 400 else 500
            await send_json(send, status, {"detail": (run.error or {}).get("message", "")})
            return
        logger.info("Background response %s started", run.id)
        if stream:
            await _send_events(run, -1, receive, send)
        else:
            await send_json(send, 200, run.response())

    async def _drive(self, run: Run, scope: Scope, body: bytes, reader: "_EventReader") -> None:
        """Run the agent's @stream handler through the server, as a streaming request would."""
        run.status = "in_progress"
        inner = {**with_length(scope, len(body)), "path": "/responses", "raw_path": b"/responses"}
        error: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await self.app(inner, replay_body(body, _no_client), reader.send)
            error = reader.error()
        except TimeoutError:
            error = {
                "code": "background_timeout",
                "message": f"The agent did not finish within {TIMEOUT_SECONDS:g} s "
                "(AGENT_BACKGROUND_TIMEOUT_SECONDS).",
            }
        except asyncio.CancelledError:
            error = {"code": "server_stopped", "message": "The server stopped during the run."}
            raise
        except Exception:
            logger.exception("Background response %s failed", run.id)
            error = {"code": "internal_error", "message": "The agent failed (see the app's log)."}
        finally:
            await run.end(error)
            logger.info("Background response %s ended: %s", run.id, run.status)


class _EventReader:
    """The ASGI `send` of a background run: reads mlflow's SSE answer into the run's events."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.status = 200
        self.pending = b""
        self.failure: dict[str, Any] | None = None
        # Set once mlflow answered: True when it streams the run, False when it refused it.
        self.accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.status == 200:
                self.accepted.set_result(True)
        elif message["type"] == "http.response.body":
            self.pending += message.get("body", b"")
            if self.status != 200:
                if not message.get("more_body", False):
                    self.failure = {"code": f"http_{self.status}", "message": self._detail()}
                    self.accepted.set_result(False)
                return
            *frames, self.pending = self.pending.split(b"\n\n")
            for frame in frames:
                await self._read_frame(frame.decode("utf-8", errors="replace"))

    async def _read_frame(self, frame: str) -> None:
        payload = "".join(
            line[len("data:") :].strip() for line in frame.splitlines() if line.startswith("data:")
        )
        if not payload or payload == "[DONE]":
            return
        event = json.loads(payload)
        if not isinstance(event, dict):
            return
        if event.get("type") == "error" or ("error" in event and "type" not in event):
            message = str(event.get("message") or event.get("error"))
            self.failure = {"code": str(event.get("code") or "agent_error"), "message": message}
        await self.run.record(event)

    def _detail(self) -> str:
        try:
            return str(json.loads(self.pending)["detail"])
        except (ValueError, KeyError, TypeError):
            return self.pending.decode("utf-8", errors="replace")[:1000]

    def error(self) -> dict[str, Any] | None:
        return self.failure


async def _no_client() -> Message:
    """The receive of a request without a client: it never disconnects."""
    await asyncio.Event().wait()  # until the run ends and this is cancelled
    return {"type": "http.disconnect"}


def _owner(scope: Scope) -> str | None:
    """Whose run a request may start or read: deployed, the proxy's user; locally nobody's."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return proxy_user(headers)


async def _not_found(run_id: str, send: Send) -> None:
    detail = f"No background response {run_id[:100]!r}: unknown, expired, or someone else's."
    await send_json(send, 404, {"detail": detail})


async def _cancel_run(run_id: str, scope: Scope, send: Send) -> None:
    """Stop a run (its LLM calls too, as for a client that left a stream); an ended run stays
    as it ended."""
    run = _store.get(run_id, _owner(scope))
    if run is None:
        await _not_found(run_id, send)
        return
    if run.ended_at is None and run.task is not None:
        run.cancelled = True
        run.task.cancel()
        await asyncio.gather(run.task, return_exceptions=True)
    await send_json(send, 200, run.response())


async def _read_run(run_id: str, scope: Scope, receive: Receive, send: Send) -> None:
    run = _store.get(run_id, _owner(scope))
    if run is None:
        await _not_found(run_id, send)
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    stream = query.get("stream", ["false"])[-1].lower() == "true"
    after = query.get("starting_after", [None])[-1]
    if after is not None and (not stream or not after.isdigit()):
        detail = "'starting_after' must be a sequence number (0 or more), with stream=true."
        await send_json(send, 422, {"detail": detail})
        return
    if stream:
        await _send_events(run, int(after) if after is not None else -1, receive, send)
    else:
        await send_json(send, 200, run.response())


async def _send_events(run: Run, after: int, receive: Receive, send: Send) -> None:
    """Stream the run's events after sequence number `after`, until it ends or the client leaves.

    The client leaving stops only this stream: the run goes on.
    """
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def tail() -> None:
        async for event in _events_after(run, after):
            body = f"data: {json.dumps(event)}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def client_left() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.ensure_future(tail()), asyncio.ensure_future(client_left())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()


async def _events_after(run: Run, after: int) -> AsyncIterator[dict[str, Any]]:
    for sequence in itertools.count(after + 1):
        async with run.changed:
            await run.changed.wait_for(
                lambda seq=sequence: seq < len(run.events) or run.ended_at is not None
            )
        if sequence >= len(run.events):
            return
        yield run.events[sequence]


async def stop_runs() -> None:
    """Stop the runs still going (at server shutdown), so that their traces end."""
    tasks = [run.task for run in _store.running() if run.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
