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
fails; an ended run is kept for AGENT_BACKGROUND_KEEP_SECONDS (default 3600); the server keeps at
most AGENT_BACKGROUND_MAX_RUNS runs (default 100), dropping the oldest ended run for a new one, and
refuses a new run with 429 when all of them are still running.

Runs are kept in a store that every worker process of the server shares (run_store.py says
where, and how long they last): a run started through one worker is read, resumed and cancelled
through any other. The process that runs the agent writes the run's events to the store as they
come, in batches (each write takes the events that came while the previous one was written), and
every CHECK_SECONDS writes its heartbeat and looks whether another process asked to cancel the
run. A reader reads the store: a reader in the run's own process is woken by each write, any other
looks again every POLL_SECONDS. At shutdown a process ends its runs as failed; one that died
without doing so stops its heartbeat, and readers then end its runs as failed.

databricks-ai-bridge's LongRunningAgentServer keeps runs in a database too, but it runs
background mode only when that database is configured (its own settings, its own fixed schema),
replaces mlflow's request handling by subclassing its AgentServer, and serves any run to whoever
has its id; so the project keeps its own store.
"""

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from agent_server.runtime.errors import AgentError
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
from agent_server.runtime.run_store import RunLimitError, RunStore, RunStoreError, run_store

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = float(os.environ.get("AGENT_BACKGROUND_TIMEOUT_SECONDS", "3600"))
# How often a running run's process writes its heartbeat and looks for a cancel request, and how
# often a reader in another process looks for new events.
CHECK_SECONDS = 1.0
POLL_SECONDS = 0.1
# Longest a cancel through another process waits for the run to end (that process sees the
# request within CHECK_SECONDS; the rest is for a loaded machine).
CANCEL_WAIT_SECONDS = 20.0

RUN_PATH = re.compile(r"^/responses/(?P<id>[^/]+)$")
CANCEL_PATH = re.compile(r"^/responses/(?P<id>[^/]+)/cancel$")


@dataclass
class LocalRun:
    """A run that this process drives: its task, and the events not yet in the store."""

    id: str
    task: asyncio.Task[None] | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    next_sequence: int = 1  # 0 is response.created, stored with the run
    cancelled: bool = False  # its user cancelled it
    finished: bool = False  # the agent is done: the last events are pending
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    written: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, event: dict[str, Any]) -> None:
        """Queue `event` with the next sequence number for the writer."""
        self.pending.append({**event, "sequence_number": self.next_sequence})
        self.next_sequence += 1
        self.wake.set()

    def cancel(self) -> None:
        if self.task is not None and not self.finished:
            self.cancelled = True
            self.task.cancel()

    async def write(self, store: RunStore) -> None:
        """Write the pending events until the run is finished and all are written."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_SECONDS):
                    await self.wake.wait()
            self.wake.clear()
            finished, batch, self.pending = self.finished, self.pending, []
            try:
                state = await store.append(self.id, batch)
            except RunStoreError:  # logged by the store
                self.pending = batch + self.pending  # tried again at the next wake or check
                if finished:
                    return
                continue
            # Readers in this process wait on `written`: a new event each time, the old one set.
            self.written, written = asyncio.Event(), self.written
            written.set()
            if state is None or state.cancel_requested:
                self.cancel()  # cancelled through another process, or ended as dead by a reader
            if finished:
                return


_local: dict[str, LocalRun] = {}


class BackgroundRuns:
    """ASGI middleware, inside the request guard: starts background runs and serves their reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            if match := RUN_PATH.match(scope["path"]):
                if store := await _store_or_503(send):
                    run_id = match["id"]
                    await _unless_store_fails(
                        lambda out: _read_run(store, run_id, scope, receive, out), send
                    )
                return
        if scope["type"] == "http" and scope["method"] == "POST":
            if match := CANCEL_PATH.match(scope["path"]):
                if store := await _store_or_503(send):
                    run_id = match["id"]
                    await _unless_store_fails(
                        lambda out: _cancel_run(store, run_id, scope, out), send
                    )
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
        elif store := await _store_or_503(send):
            await _unless_store_fails(
                lambda out: self._start(store, data, scope, receive, out), send
            )

    async def _start(
        self, store: RunStore, data: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        owner = _owner(scope)
        try:
            state = await store.add(owner)
        except RunLimitError as full:
            await send_json(send, 429, {"detail": str(full)})
            return
        run = _local[state.id] = LocalRun(state.id)
        stream = data.pop("stream", False)
        data.pop("background")
        request = json.dumps({**data, "stream": True}).encode()
        reader = _EventReader(run)
        run.task = asyncio.get_running_loop().create_task(
            self._drive(store, run, scope, request, reader)
        )
        # The answer waits for mlflow to accept the request, so that a request it refuses (a
        # role it does not know, ...) gets its 4xx here, as without background mode.
        await asyncio.wait({reader.accepted, run.task}, return_when=asyncio.FIRST_COMPLETED)
        if not (reader.accepted.done() and reader.accepted.result()):
            await asyncio.gather(run.task, return_exceptions=True)
            await store.discard(run.id)
            status = reader.status if reader.status >= 400 else 500
            await send_json(send, status, {"detail": (reader.failure or {}).get("message", "")})
            return
        logger.info("Background response %s started", run.id)
        if stream:
            await _send_events(store, run.id, owner, -1, receive, send)
        else:
            await send_json(send, 200, state.response())

    async def _drive(
        self, store: RunStore, run: LocalRun, scope: Scope, body: bytes, reader: "_EventReader"
    ) -> None:
        """Run the agent's @stream handler through the server, as a streaming request would."""
        inner = {**with_length(scope, len(body)), "path": "/responses", "raw_path": b"/responses"}
        writer = asyncio.get_running_loop().create_task(run.write(store))
        error: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await self.app(inner, replay_body(body, _no_client), reader.send)
            error = reader.failure
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
            run.finished = True
            run.wake.set()
            await writer
            if run.cancelled:
                status, error = "cancelled", None
            else:
                status = "failed" if error else "completed"
            # A failure is logged by the store; readers end the run once its heartbeat is old.
            with contextlib.suppress(RunStoreError):
                await store.end(run.id, status, error)
            _local.pop(run.id, None)
            logger.info("Background response %s ended: %s", run.id, status)


class _EventReader:
    """The ASGI `send` of a background run: reads mlflow's SSE answer into the run's events."""

    def __init__(self, run: LocalRun) -> None:
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
                self._read_frame(frame.decode("utf-8", errors="replace"))

    def _read_frame(self, frame: str) -> None:
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
        self.run.record(event)

    def _detail(self) -> str:
        try:
            return str(json.loads(self.pending)["detail"])
        except (ValueError, KeyError, TypeError):
            return self.pending.decode("utf-8", errors="replace")[:1000]


async def _no_client() -> Message:
    """The receive of a request without a client: it never disconnects."""
    await asyncio.Event().wait()  # until the run ends and this is cancelled
    return {"type": "http.disconnect"}


async def _store_or_503(send: Send) -> RunStore | None:
    """The run store; None, with a 503 sent, when it cannot be opened."""
    try:
        return await run_store()
    except Exception as exc:
        logger.exception("The background run store could not be opened")
        reason = str(exc) if isinstance(exc, AgentError) else type(exc).__name__
        detail = f"Background responses are unavailable: their store did not open ({reason})."
        await send_json(send, 503, {"detail": detail})
        return None


async def _unless_store_fails(serve: Callable[[Send], Awaitable[None]], send: Send) -> None:
    """Serve a request that uses the store; 503 with the reason if the store fails first."""
    started = False

    async def tracked(message: Message) -> None:
        nonlocal started
        started = True
        await send(message)

    try:
        await serve(tracked)
    except RunStoreError as failed:
        if started:
            raise  # mid-stream: the client sees the connection end, and resumes
        await send_json(send, 503, {"detail": f"Background responses are unavailable: {failed}."})


def _owner(scope: Scope) -> str:
    """Whose run a request may start or read: deployed, the proxy's user; locally nobody's."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return proxy_user(headers) or ""


async def _not_found(run_id: str, send: Send) -> None:
    detail = f"No background response {run_id[:100]!r}: unknown, expired, or someone else's."
    await send_json(send, 404, {"detail": detail})


async def _cancel_run(store: RunStore, run_id: str, scope: Scope, send: Send) -> None:
    """Stop a run (its LLM calls too, as for a client that left a stream), in whichever process
    runs it; an ended run stays as it ended."""
    owner = _owner(scope)
    state, _ = await store.read(run_id, owner)
    if state is None:
        await _not_found(run_id, send)
        return
    if state.ended_at is None:
        if (run := _local.get(run_id)) is not None and run.task is not None:
            run.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
        else:
            await store.request_cancel(run_id)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CANCEL_WAIT_SECONDS
            while state is not None and state.ended_at is None and loop.time() < deadline:
                await asyncio.sleep(POLL_SECONDS)
                state, _ = await store.read(run_id, owner)
    state, _ = await store.read(run_id, owner)
    if state is None:
        await _not_found(run_id, send)
        return
    await send_json(send, 200, state.response(await store.output(run_id)))


async def _read_run(
    store: RunStore, run_id: str, scope: Scope, receive: Receive, send: Send
) -> None:
    owner = _owner(scope)
    state, _ = await store.read(run_id, owner)
    if state is None:
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
        await _send_events(
            store, run_id, owner, int(after) if after is not None else -1, receive, send
        )
    else:
        await send_json(send, 200, state.response(await store.output(run_id)))


async def _send_events(
    store: RunStore, run_id: str, owner: str, after: int, receive: Receive, send: Send
) -> None:
    """Stream the run's events after sequence number `after`, until it ends or the client leaves.

    The client leaving stops only this stream: the run goes on.
    """
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def tail() -> None:
        async for event in _events_after(store, run_id, owner, after):
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


async def _events_after(
    store: RunStore, run_id: str, owner: str, after: int
) -> AsyncIterator[dict[str, Any]]:
    while True:
        run = _local.get(run_id)
        written = run.written if run is not None else None
        state, events = await store.read(run_id, owner, after)
        for event in events:
            yield event
            after = event["sequence_number"]
        if events:
            continue
        if state is None or state.ended_at is not None:
            return  # ended (its last event was read), or expired
        if written is None:
            await asyncio.sleep(POLL_SECONDS)  # run by another process: look again
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_SECONDS):
                await written.wait()


async def stop_runs() -> None:
    """Stop the runs of this process still going (at server shutdown), so that their traces end
    and the store has them as failed."""
    tasks = [run.task for run in _local.values() if run.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
