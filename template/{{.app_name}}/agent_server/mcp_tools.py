"""LangChain tools from the managed MCP servers of tool_servers.py.

The tools come from databricks-langchain's MCP client, authenticated by the agent's workspace
client. They are listed once per process, when the agent is built, and:
- a server that does not answer then (down, no permission, too slow) is left out, with a
  warning in the log: the agent runs with the tools of the others;
- a tool call that fails (an error from the server, a timeout, a lost connection) becomes an
  error message that the LLM reads as the tool's result: the request still completes;
- every call is bounded by AGENT_TOOL_TIMEOUT_SECONDS.

The MCP client is async. Sync agents call the tools through one event loop of their own, on a
daemon thread (run_sync), so the server's event loop never waits for a tool.
"""

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from databricks.sdk import WorkspaceClient
from databricks_langchain import DatabricksMCPServer, DatabricksMultiServerMCPClient
from langchain_core.tools import BaseTool, StructuredTool

from agent_server.tool_servers import (
    TOOL_LOAD_TIMEOUT_SECONDS,
    TOOL_TIMEOUT_SECONDS,
    ToolServer,
    configured_tool_servers,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def load_mcp_tools(workspace_client: WorkspaceClient) -> list[BaseTool]:
    """The tools of every configured MCP server that answers, each guarded (see guarded)."""
    servers = configured_tool_servers()
    if not servers:
        return []
    host = workspace_client.config.host or ""
    results = await asyncio.gather(
        *(_server_tools(server, host, workspace_client) for server in servers),
        return_exceptions=True,
    )
    tools: list[BaseTool] = []
    for server, result in zip(servers, results, strict=True):
        if isinstance(result, BaseException):
            logger.warning(
                "MCP server %s (%s) is not available, the agent runs without its tools: %s",
                server.name,
                server.resource,
                _reason(result),
            )
            continue
        logger.info("MCP server %s: tools %s", server.name, [tool.name for tool in result])
        tools.extend(guarded(tool, server) for tool in result)
    return tools


async def _server_tools(
    server: ToolServer, host: str, workspace_client: WorkspaceClient
) -> list[BaseTool]:
    client = DatabricksMultiServerMCPClient(
        [
            DatabricksMCPServer(
                name=server.name,
                url=server.url(host),
                workspace_client=workspace_client,
                timeout=TOOL_TIMEOUT_SECONDS,
                sse_read_timeout=TOOL_TIMEOUT_SECONDS,
            )
        ]
    )
    return await asyncio.wait_for(client.get_tools(), TOOL_LOAD_TIMEOUT_SECONDS)


def guarded(tool: BaseTool, server: ToolServer) -> BaseTool:
    """`tool`, bounded in time, with failures returned to the LLM as the tool's result."""

    async def call(**arguments: Any) -> Any:
        try:
            return await asyncio.wait_for(tool.ainvoke(arguments), TOOL_TIMEOUT_SECONDS)
        except Exception as exc:  # the LLM reads the failure; the request goes on
            reason = _reason(exc)
            logger.warning("Tool %s (MCP server %s) failed: %s", tool.name, server.name, reason)
            return f"Error: the tool {tool.name} failed: {reason}"

    def call_sync(**arguments: Any) -> Any:
        return run_sync(call(**arguments))

    return StructuredTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        func=call_sync,
        coroutine=call,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {TOOL_TIMEOUT_SECONDS:g} s (AGENT_TOOL_TIMEOUT_SECONDS)"
    # TaskGroup errors (the MCP client's) hide the cause inside.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:500]


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def run_sync(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coroutine` on this module's event loop thread and wait for its result (sync code)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="mcp-tools", daemon=True).start()
        loop = _loop
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    return future.result(timeout=TOOL_TIMEOUT_SECONDS + 5 if timeout is None else timeout)
