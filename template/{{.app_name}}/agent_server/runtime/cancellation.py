"""Stops the LLM calls of a request that nobody waits for any more.

When a client goes away mid-stream (or a request runs out of time), the server stops the
handler, but that alone does not end an LLM call already running:
- a sync handler runs on a worker thread, which cannot be interrupted, and LangGraph waits for
  a running node (the LLM call) to finish before its stream closes;
- an async handler is cancelled, but the cancellation arrives through an anyio cancel scope
  (starlette's), which cancels every await again, including the clean-up in which LangGraph
  cancels the LLM call (handler_adapter.py runs async streams in a task of their own for this).

So each request gets a `threading.Event`, set when the request is abandoned, and when LangChain
is installed every LLM call made while serving the request gets a callback that raises
`RequestAbandoned` at the LLM's next token once the event is set. The call ends, and
`release_abandoned()` closes its connection to the LLM endpoint. Code that calls an LLM without
LangChain can check `abandoned()` between tokens to do the same.
"""

import gc
import threading
import time
from contextvars import ContextVar
from typing import Any

# Garbage collections run for abandoned calls at most this often (each pauses the process).
COLLECT_INTERVAL_SECONDS = 1.0

_abandoned: ContextVar[threading.Event | None] = ContextVar("agent_request_abandoned", default=None)


class RequestAbandoned(Exception):
    """Raised inside an LLM call whose request nobody waits for any more."""


def watch(event: threading.Event) -> None:
    """Tie the LLM calls made in the current context to `event` (run it in a copied context)."""
    _abandoned.set(event)
    if _langchain_hook is not None:
        _langchain_hook.set(_StopWhenAbandoned(event))


def abandoned() -> bool:
    """Whether the request served in the current context has been abandoned."""
    event = _abandoned.get()
    return event is not None and event.is_set()


_collect_lock = threading.Lock()
_last_collect = 0.0
_collect_pending = False


def release_abandoned() -> None:
    """Close the LLM connections of stopped calls now, not at some later garbage collection.

    A stopped sync LLM call leaves openai's Stream unread, and the Stream and the generator that
    reads it refer to each other: only the cyclic garbage collector frees them, and closes the
    HTTP response, which can take minutes. So collect now, or, if a collection ran less than
    COLLECT_INTERVAL_SECONDS ago, once that interval is over. start_server.py freezes the objects
    of the start-up, which keeps a collection short.
    """
    global _collect_pending
    with _collect_lock:
        if _collect_pending:
            return
        _collect_pending = True
        wait = _last_collect + COLLECT_INTERVAL_SECONDS - time.monotonic()
    if wait > 0:
        timer = threading.Timer(wait, _collect)
        timer.daemon = True
        timer.start()
    else:
        _collect()


def _collect() -> None:
    global _collect_pending, _last_collect
    with _collect_lock:
        _collect_pending = False
        _last_collect = time.monotonic()
    gc.collect()


try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tracers.context import register_configure_hook
except ImportError:  # no LangChain in this agent: nothing to hook into
    _langchain_hook: ContextVar[Any] | None = None
else:

    class _StopWhenAbandoned(BaseCallbackHandler):
        raise_error = True  # LangChain swallows a callback's exception unless this is set
        run_inline = True  # called on the LLM call's own thread or task, not an executor

        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            if self.event.is_set():
                raise RequestAbandoned("The request was abandoned: its LLM call is stopped.")

    _langchain_hook = ContextVar("agent_stop_when_abandoned", default=None)
    # Every LangChain run in a context where the variable is set gets the handler.
    register_configure_hook(_langchain_hook, inheritable=True)
