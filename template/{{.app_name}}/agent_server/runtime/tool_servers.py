"""The Databricks managed MCP servers the agent uses as tools, read from the environment.

Each workspace resource chosen at `bundle init` sets one variable (app.yaml, databricks.yml,
.env locally), and each variable that is set adds one managed MCP server:

    GENIE_SPACE_ID       <host>/api/2.0/mcp/genie/{space_id}
    VECTOR_SEARCH_INDEX  <host>/api/2.0/mcp/vector-search/{catalog}/{schema}/{index}
    UC_FUNCTION_SCHEMA   <host>/api/2.0/mcp/functions/{catalog}/{schema}[/{function}]
    UC_CONNECTION        <host>/api/2.0/mcp/external/{connection}

Nothing here depends on an agent framework: its `*_mcp_tools.py` turns these servers into tools.
"""

import os
from dataclasses import dataclass
from urllib.parse import quote

# Seconds to wait for an MCP server's answer (connection, and each read of its answer), and
# the longest a whole tool call may take. AGENT_TOOL_TIMEOUT_SECONDS bounds both.
TOOL_TIMEOUT_SECONDS = float(os.environ.get("AGENT_TOOL_TIMEOUT_SECONDS", "60"))
# Longest the agent waits, at its first build, for one server's list of tools.
TOOL_LOAD_TIMEOUT_SECONDS = float(os.environ.get("AGENT_TOOL_LOAD_TIMEOUT_SECONDS", "20"))


@dataclass(frozen=True)
class ToolServer:
    name: str  # a short label for logs and error messages
    path: str  # the managed MCP server's path on the workspace host
    resource: str  # what it serves, as the user wrote it

    def url(self, host: str) -> str:
        return f"{host.rstrip('/')}{self.path}"


def _segments(value: str) -> str:
    return "/".join(quote(part, safe="") for part in value.split("."))


def configured_tool_servers(environ: dict[str, str] | None = None) -> list[ToolServer]:
    """The managed MCP servers for the resource variables that are set, in a fixed order."""
    env = os.environ if environ is None else environ
    servers: list[ToolServer] = []
    if space := env.get("GENIE_SPACE_ID", "").strip():
        servers.append(ToolServer("genie", f"/api/2.0/mcp/genie/{quote(space, safe='')}", space))
    if index := env.get("VECTOR_SEARCH_INDEX", "").strip():
        # The server of this one index (without the index, the server of its schema serves
        # every index there); its tool is named catalog__schema__index.
        path = f"/api/2.0/mcp/vector-search/{_segments(index)}"
        servers.append(ToolServer("vector-search", path, index))
    if functions := env.get("UC_FUNCTION_SCHEMA", "").strip():
        path = f"/api/2.0/mcp/functions/{_segments(functions)}"
        servers.append(ToolServer("uc-functions", path, functions))
    if connection := env.get("UC_CONNECTION", "").strip():
        path = f"/api/2.0/mcp/external/{quote(connection, safe='')}"
        servers.append(ToolServer("external", path, connection))
    return servers


def failure_reason(exc: BaseException) -> str:
    """Why a tool server or call failed, in one line the LLM and the log can read."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {TOOL_TIMEOUT_SECONDS:g} s (AGENT_TOOL_TIMEOUT_SECONDS)"
    # TaskGroup errors (the MCP client's) hide the cause inside.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:500]
