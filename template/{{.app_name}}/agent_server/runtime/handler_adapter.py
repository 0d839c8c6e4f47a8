"""Adapts the functions registered with @invoke and @stream before the server uses them.

mlflow's agent server calls a sync handler, or iterates a sync generator, directly on its event
loop: while one sync request runs, no other request (not even /health) is served. Here sync
handlers run on a pool of worker threads instead, and sync generators are drained by one worker
thread each, so sync code serves requests concurrently like async code.

Each adapted handler also turns failures into answers a client can use:
- invoke: every exception is reported to the request guard as an AgentError (LLM client
  failures map to 502/503/504, see errors.py; anything else is an InternalError, 500), which
  answers it with its status code and a redacted `{"detail": ...}`. A request that runs longer
  than AGENT_REQUEST_TIMEOUT_SECONDS is cancelled and answered 504.
- stream: the stream ends with one well-formed error event, then mlflow's `data: [DONE]`:
  `{"type": "error", "code": ..., "message": ..., "status": ..., "error": ...}` (`type`, `code`
  and `message` as in the OpenAI Responses stream; `error` repeats the message in mlflow's own
  format). The request's trace span is marked as failed.
Nothing is retried here: the LLM client retries a failed call before its answer starts (see
agent.py), and once tokens have reached the client a retry would send them twice.

Cancellation: when the client goes away mid-stream, the stream is abandoned. An async handler
runs in a task of its own, which is cancelled at once (LangGraph then cancels its LLM call); a
sync generator cannot be interrupted on its thread: its LLM call stops at the LLM's next token
(cancellation.py) and the generator is closed after the item it is producing. A request over
AGENT_REQUEST_TIMEOUT_SECONDS is abandoned the same way.
"""

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mlflow

from agent_server.runtime import cancellation
from agent_server.runtime.errors import AgentError, InternalError, public_error
from agent_server.runtime.mlflow_internals import replace_registered_handlers
from agent_server.runtime.request_guard import report_error

logger = logging.getLogger(__name__)

# Worker threads for sync handlers: the number of sync requests that can run at once.
SYNC_WORKERS = int(os.environ.get("AGENT_SYNC_WORKERS", "64"))
# Stream events a sync generator may run ahead of the client before it waits.
STREAM_BUFFER = 64
# Longest a non-streaming request may take, all LLM and tool calls included.
REQUEST_TIMEOUT_SECONDS = float(os.environ.get("AGENT_REQUEST_TIMEOUT_SECONDS", "300"))

_pool: ThreadPoolExecutor | None = None


class AgentTimeoutError(AgentError):
    """The whole request took longer than AGENT_REQUEST_TIMEOUT_SECONDS."""

    status_code = 504
    code = "agent_timeout"


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=SYNC_WORKERS, thread_name_prefix="agent-sync")
    return _pool


def shutdown_workers() -> None:
    """Stop the worker threads once their current requests end (at server shutdown)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def adapt_registered_handlers() -> None:
    """Replace the registered @invoke and @stream functions with their adapted versions."""
    replace_registered_handlers(async_invoke, async_stream)


def async_invoke(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An async version of an invoke handler: sync handlers run on a worker thread."""
    if getattr(func, "_agent_adapted", False):
        return func

    async def call(request: Any, abandoned: threading.Event) -> Any:
        if inspect.iscoroutinefunction(func):
            return await func(request)
        loop = asyncio.get_running_loop()
        # The copied context carries the request's trace span and headers into the thread.
        context = contextvars.copy_context()
        context.run(cancellation.watch, abandoned)
        return await loop.run_in_executor(_executor(), context.run, func, request)

    @functools.wraps(func)
    async def invoke_handler(request: Any) -> Any:
        deadline = asyncio.timeout(REQUEST_TIMEOUT_SECONDS)
        abandoned = threading.Event()
        try:
            async with deadline:
                return await call(request, abandoned)
        except Exception as exc:
            abandoned.set()  # a sync handler's thread stops its LLM call at the next token
            if deadline.expired():
                error: AgentError = AgentTimeoutError(
                    f"The agent did not finish within {REQUEST_TIMEOUT_SECONDS:g} s "
                    "(AGENT_REQUEST_TIMEOUT_SECONDS)."
                )
            else:
                error = public_error(exc)
            report_error(error)
            raise error from exc

    invoke_handler._agent_adapted = True  # type: ignore[attr-defined]
    return invoke_handler


def async_stream(func: Callable[[Any], Any]) -> Callable[[Any], AsyncIterator[Any]]:
    """An async generator version of a stream handler: sync generators run on a worker thread."""
    if getattr(func, "_agent_adapted", False):
        return func

    @functools.wraps(func)
    async def stream_handler(request: Any) -> AsyncIterator[Any]:
        sent = 0
        abandoned = threading.Event()
        if inspect.isasyncgenfunction(func) or inspect.iscoroutinefunction(func):
            events = iterate_in_task(lambda: func(request), abandoned)
        else:
            events = iterate_in_thread(lambda: func(request), abandoned)
        try:
            # Closed here, not whenever it is garbage collected: closing stops the agent.
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event
                    sent += 1
        except Exception as exc:
            error = public_error(exc)
            if isinstance(error, InternalError):  # a bug: its traceback goes to the log
                logger.error("Stream failed after %d events: %s", sent, error, exc_info=exc)
            else:
                logger.warning("Stream failed after %d events: %s", sent, error)
            _mark_span_failed(error)
            yield error_event(error)

    stream_handler._agent_adapted = True  # type: ignore[attr-defined]
    return stream_handler


def error_event(error: AgentError) -> dict[str, Any]:
    """The stream event that reports `error` (mlflow adds `data: [DONE]` after it)."""
    message = str(error)
    return {
        "type": "error",
        "code": error.code,
        "message": message,
        "status": error.status_code,
        "error": message,
    }


def _mark_span_failed(error: AgentError) -> None:
    """Record the failure on the request's trace span, which ends normally after the event."""
    span = mlflow.get_current_active_span()
    if span is not None:
        try:
            span.record_exception(error)
        except Exception:  # tracing must never break the answer
            logger.debug("Could not record the error on the trace span", exc_info=True)


_ITEM, _ERROR, _END = "item", "error", "end"


async def iterate_in_task(
    make_iterator: Callable[[], AsyncIterator[Any]], abandoned: threading.Event
) -> AsyncIterator[Any]:
    """Drain an async iterator in an asyncio task of its own and yield its items.

    Why a task: mlflow's server stops a stream whose client went away by cancelling it through
    an anyio cancel scope, which cancels every later await as well, including those of the
    iterator's clean-up (where LangGraph cancels its running LLM call). The task is cancelled
    the plain asyncio way, once, and cleans up to the end. `abandoned` is set as it is.
    """
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    room = asyncio.Semaphore(STREAM_BUFFER)

    async def produce() -> None:
        try:
            iterator = make_iterator()
            try:
                async for item in iterator:
                    await room.acquire()
                    queue.put_nowait((_ITEM, item))
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises it
            queue.put_nowait((_ERROR, exc))
        else:
            queue.put_nowait((_END, None))

    # The copied context carries the request's trace span and headers into the task.
    context = contextvars.copy_context()
    context.run(cancellation.watch, abandoned)
    task = asyncio.get_running_loop().create_task(produce(), context=context)
    _running.add(task)
    task.add_done_callback(_running.discard)
    try:
        async for item in _delivered(queue, room):
            yield item
    finally:
        if not task.done():
            abandoned.set()
            task.cancel()


async def _delivered(
    queue: asyncio.Queue[tuple[str, Any]], room: asyncio.Semaphore | threading.Semaphore
) -> AsyncIterator[Any]:
    """The producer's items, in order, each making room for the next; its error is re-raised."""
    while True:
        kind, value = await queue.get()
        if kind == _ITEM:
            room.release()
            yield value
        elif kind == _ERROR:
            raise value
        else:
            return


# Tasks of streams in progress: the event loop keeps only weak references to tasks.
_running: set[asyncio.Task[None]] = set()


async def iterate_in_thread(
    make_iterator: Callable[[], Iterator[Any]], abandoned: threading.Event
) -> AsyncIterator[Any]:
    """Drain a sync iterator on one worker thread and yield its items on the event loop.

    The whole iteration runs in one thread and one copied context, so context managers that span
    several items (trace spans opened inside the generator) work as in plain sync code. When the
    consumer stops early (the client went away), `abandoned` is set: LLM calls made with
    LangChain stop at their next token (cancellation.py), and the generator is closed after its
    current item.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    room = threading.Semaphore(STREAM_BUFFER)

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop closed: nobody is listening any more
            abandoned.set()

    def produce() -> None:
        try:
            iterator = make_iterator()
            try:
                for item in iterator:
                    room.acquire()
                    if abandoned.is_set():
                        break
                    put(_ITEM, item)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
                if abandoned.is_set():
                    cancellation.release_abandoned()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_ERROR, exc)
        else:
            put(_END, None)

    context = contextvars.copy_context()
    context.run(cancellation.watch, abandoned)
    loop.run_in_executor(_executor(), context.run, produce)
    try:
        async for item in _delivered(queue, room):
            yield item
    finally:
        abandoned.set()
        room.release()  # unblock a producer waiting for room, so it sees `abandoned`
