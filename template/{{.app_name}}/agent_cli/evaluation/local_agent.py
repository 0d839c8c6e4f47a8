"""The project's agent, run in this process: its registered @invoke handler, callable from threads.

Importing agent_server.agent registers its handlers (as when the server starts); the invoke
handler is then called directly, exactly as the server calls it. Why in-process rather than
against a running server: no server to start, and each answer's trace (LLM and tool calls) is
recorded inside the evaluation's own trace and run. A deployed app is checked by test-agent.

Async handlers run on one event loop owned by LocalAgent, on its own thread: the agent's async
clients are bound to the loop they were first used on, so a new loop per call (asyncio.run, as
mlflow does for async predict functions) would break them, and no nested loop is needed. The
caller's context (its trace span) goes along with each call. Sync handlers run on the calling
thread (mlflow's evaluation workers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import threading
import uuid
from collections.abc import Callable
from typing import Any

from agent_cli.console import CliError
from agent_server.runtime.gc_pause import collection_paused_then_frozen


class LocalAgent:
    """The registered @invoke handler of agent_server.agent, callable from any thread."""

    def __init__(self, handler: Callable[[Any], Any], timeout: float) -> None:
        self.handler = handler
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(handler)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        if self.is_async:
            # One loop for every call: the agent's async clients are bound to the loop they were
            # first used on (a fresh asyncio.run() per call would break them).
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="agent-evaluate-loop", daemon=True
            )
            self._thread.start()

    def invoke(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        from mlflow.types.responses import ResponsesAgentRequest

        # Each question is its own conversation, as a new chat would be.
        request = ResponsesAgentRequest(
            input=messages, context={"conversation_id": f"eval-{uuid.uuid4().hex[:12]}"}
        )
        if self._loop is None:
            response = self.handler(request)
        else:
            # The caller's context (its trace span) goes with the call onto the loop.
            future = asyncio.run_coroutine_threadsafe(self.handler(request), self._loop)
            try:
                response = future.result(timeout=self.timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise TimeoutError(f"the agent did not answer within {self.timeout:g} s") from None
        return _as_dict(response)

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()


def _as_dict(response: Any) -> dict[str, Any]:
    if hasattr(response, "model_dump"):
        return response.model_dump(exclude_none=True)
    if isinstance(response, dict):
        return response
    raise TypeError(f"the agent returned {type(response).__name__}, not a Responses answer")


def load_agent(timeout: float, module: str = "agent_server.agent") -> LocalAgent:
    """Import the agent (registering its handlers) and wrap its invoke handler."""
    # What the import builds lives as long as the command, as in the server (see gc_pause.py).
    with collection_paused_then_frozen():
        from mlflow.genai.agent_server import get_invoke_function

        importlib.import_module(module)  # importing it registers the handlers

    handler = get_invoke_function()
    if handler is None:
        raise CliError(
            "agent_server/agent.py registers no @invoke() handler",
            hint="decorate the function that answers a request with @invoke()",
        )
    return LocalAgent(handler, timeout)


def answer_text(outputs: Any) -> str:
    """The text of the assistant messages among a Responses answer's output items."""
    if not isinstance(outputs, dict):
        return ""
    parts = []
    for item in outputs.get("output") or []:
        if isinstance(item, dict) and item.get("type") == "message":
            content = item.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    p["text"]
                    for p in content
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
    return "".join(parts).strip()


def tool_names(outputs: Any) -> list[str]:
    if not isinstance(outputs, dict):
        return []
    return [
        item["name"]
        for item in outputs.get("output") or []
        if isinstance(item, dict) and item.get("type") == "function_call" and item.get("name")
    ]
