"""Adapts the functions registered with @invoke and @stream before the server uses them.

mlflow's agent server calls a sync handler, or iterates a sync generator, directly on its event
loop: while one sync request runs, no other request (not even /health) is served. Here sync
handlers run on a pool of worker threads instead, and sync generators are drained by one worker
thread each, so sync code serves requests concurrently like async code.

Each adapted handler also reports an AgentError (including LLM client failures, see errors.py)
to the request guard, which answers it with its own status code rather than the 500 that mlflow
gives every exception.
"""

import asyncio
import contextvars
import functools
import inspect
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlflow.genai.agent_server import server as mlflow_server

from agent_server.errors import as_agent_error
from agent_server.request_guard import report_error

# Worker threads for sync handlers: the number of sync requests that can run at once.
SYNC_WORKERS = int(os.environ.get("AGENT_SYNC_WORKERS", "64"))
# Stream events a sync generator may run ahead of the client before it waits.
STREAM_BUFFER = 64

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=SYNC_WORKERS, thread_name_prefix="agent-sync")
    return _pool


def adapt_registered_handlers() -> None:
    """Replace the registered @invoke and @stream functions with their adapted versions."""
    if not hasattr(mlflow_server, "_invoke_function"):
        raise RuntimeError(
            "This mlflow version keeps agent handlers elsewhere; check the mlflow pin in "
            "pyproject.toml."
        )
    if (invoke := mlflow_server._invoke_function) is not None:
        mlflow_server._invoke_function = async_invoke(invoke)
    if (stream := mlflow_server._stream_function) is not None:
        mlflow_server._stream_function = async_stream(stream)


def async_invoke(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An async version of an invoke handler: sync handlers run on a worker thread."""
    if getattr(func, "_agent_adapted", False):
        return func

    @functools.wraps(func)
    async def invoke_handler(request: Any) -> Any:
        try:
            if inspect.iscoroutinefunction(func):
                return await func(request)
            loop = asyncio.get_running_loop()
            # The copied context carries the request's trace span and headers into the thread.
            context = contextvars.copy_context()
            return await loop.run_in_executor(_executor(), context.run, func, request)
        except Exception as exc:
            if (error := _as_reported_agent_error(exc)) is not exc:
                raise error from exc
            raise

    invoke_handler._agent_adapted = True  # type: ignore[attr-defined]
    return invoke_handler


def async_stream(func: Callable[[Any], Any]) -> Callable[[Any], AsyncIterator[Any]]:
    """An async generator version of a stream handler: sync generators run on a worker thread."""
    if getattr(func, "_agent_adapted", False):
        return func

    @functools.wraps(func)
    async def stream_handler(request: Any) -> AsyncIterator[Any]:
        try:
            if inspect.isasyncgenfunction(func) or inspect.iscoroutinefunction(func):
                async for event in func(request):
                    yield event
            else:
                async for event in iterate_in_thread(lambda: func(request)):
                    yield event
        except Exception as exc:
            if (error := _as_reported_agent_error(exc)) is not exc:
                raise error from exc
            raise

    stream_handler._agent_adapted = True  # type: ignore[attr-defined]
    return stream_handler


def _as_reported_agent_error(exc: Exception) -> Exception:
    """The exception to raise for a handler failure; an AgentError is reported to the guard."""
    error = as_agent_error(exc)
    if error is None:
        return exc
    report_error(error)
    return error


_ITEM, _ERROR, _END = "item", "error", "end"


async def iterate_in_thread(make_iterator: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    """Drain a sync iterator on one worker thread and yield its items on the event loop.

    The whole iteration runs in one thread and one copied context, so context managers that span
    several items (trace spans opened inside the generator) work as in plain sync code. When the
    consumer stops early (the client went away), the generator is closed after its current item.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    room = threading.Semaphore(STREAM_BUFFER)
    stopped = threading.Event()

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop closed: nobody is listening any more
            stopped.set()

    def produce() -> None:
        try:
            iterator = make_iterator()
            try:
                for item in iterator:
                    room.acquire()
                    if stopped.is_set():
                        break
                    put(_ITEM, item)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_ERROR, exc)
        else:
            put(_END, None)

    context = contextvars.copy_context()
    loop.run_in_executor(_executor(), context.run, produce)
    try:
        while True:
            kind, value = await queue.get()
            if kind == _ITEM:
                room.release()
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        stopped.set()
        room.release()  # unblock a producer waiting for room, so it sees `stopped`
