"""Databricks managed MCP servers: JSON-RPC over streamable HTTP, with deterministic tools.

    POST /api/2.0/mcp/genie/{space_id}                       query_space_{space_id}
    POST /api/2.0/mcp/vector-search/{catalog}/{schema}       {catalog}__{schema}__{index} (one)
    POST /api/2.0/mcp/functions/{catalog}/{schema}[/{fn}]    {catalog}__{schema}__{fn}
    POST /api/2.0/mcp/external/{connection}                  {connection}__search

Each POST carries one JSON-RPC message. Requests (`initialize`, `tools/list`, `tools/call`,
`ping`) get a JSON answer; notifications (`notifications/initialized`) get 202 and no body. No
session id is issued, so clients open no GET stream and send no DELETE (both answer 405).

Settings: `mcp_down` (server kinds "genie", "vector-search", "functions", "external" that
answer 503, as a server that is down), `mcp_failing` (tool names whose calls return a tool
error, `isError: true`) and `mcp_delay` (seconds each tool call takes).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

from .core import Call, error, route

PROTOCOL_VERSION = "2025-06-18"
# The names of the vector search index and the UC function that the fake serves for a schema
# (the real servers serve those of the schema; the tests name them with these helpers).
DEFAULT_INDEX = "product_docs_index"
DEFAULT_FUNCTION = "lookup_order"
QUERY_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to look for"}},
    "required": ["query"],
}


def genie_tool(space_id: str) -> str:
    return f"query_space_{space_id}"


def vector_search_tool(index: str) -> str:
    """The tool name of an index given as catalog.schema.index (or catalog.schema)."""
    parts = index.split(".")
    return "__".join(parts if len(parts) == 3 else [*parts, DEFAULT_INDEX])


def function_tool(functions: str) -> str:
    """The tool name of catalog.schema.function (or of the default function of catalog.schema)."""
    parts = functions.split(".")
    return "__".join(parts if len(parts) == 3 else [*parts, DEFAULT_FUNCTION])


def external_tool(connection: str) -> str:
    return f"{connection.replace('-', '_')}__search"


def tool_result(tool: str, arguments: dict[str, Any]) -> str:
    """The deterministic text a tool returns, for tests to compare with."""
    return f"[{tool}] result for {json.dumps(arguments, sort_keys=True)}"


def _tools(kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
    if kind == "genie":
        name = genie_tool(params["space"])
        description = "Ask the Genie space a question about its data, in natural language."
        return [{"name": name, "description": description, "inputSchema": QUERY_SCHEMA}]
    if kind == "vector-search":
        index = ".".join(p for p in (params["catalog"], params["schema"], params.get("index")) if p)
        name = vector_search_tool(index)
        description = "Search the vector search index for passages relevant to the query."
        return [{"name": name, "description": description, "inputSchema": QUERY_SCHEMA}]
    if kind == "functions":
        parts = (params["catalog"], params["schema"], params.get("function"))
        name = function_tool(".".join(p for p in parts if p))
        schema = {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "The order id"}},
            "required": ["order_id"],
        }
        return [{"name": name, "description": "Look an order up by its id.", "inputSchema": schema}]
    name = external_tool(params["connection"])
    description = "Search the external service."
    return [{"name": name, "description": description, "inputSchema": QUERY_SCHEMA}]


async def _serve(call: Call, kind: str) -> Response:
    if kind in call.settings.mcp_down:
        return error(503, "TEMPORARILY_UNAVAILABLE", f"The {kind} MCP server is unavailable.")
    message = call.body
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return error(400, "INVALID_PARAMETER_VALUE", "expected one JSON-RPC 2.0 message")
    if "id" not in message:  # a notification
        return Response(status_code=202)
    method = message.get("method")
    params = message.get("params") or {}
    tools = _tools(kind, call.params)
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": params.get("protocolVersion", PROTOCOL_VERSION),
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": f"databricks-{kind}-mcp", "version": "1.0.0"},
        }
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": tools}
    elif method == "tools/call":
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if name not in {tool["name"] for tool in tools}:
            return _rpc_error(message["id"], -32602, f"Unknown tool: {name}")
        if not await call.pause(call.settings.mcp_delay):
            return error(503, "TEMPORARILY_UNAVAILABLE", "The fake workspace is stopping.")
        if name in call.settings.mcp_failing:
            text = f"Tool {name} failed: the backing service returned an error."
            result = {"content": [{"type": "text", "text": text}], "isError": True}
        else:
            text = tool_result(name, arguments)
            result = {"content": [{"type": "text", "text": text}], "isError": False}
    else:
        return _rpc_error(message["id"], -32601, f"Method not found: {method}")
    return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": result})


def _rpc_error(request_id: Any, code: int, text: str) -> JSONResponse:
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": text}}
    return JSONResponse(body)


async def _no_stream(call: Call) -> Response:
    return Response(status_code=405, headers={"Allow": "POST"})


_PATHS = {
    "genie": ["/api/2.0/mcp/genie/{space}"],
    "vector-search": [
        "/api/2.0/mcp/vector-search/{catalog}/{schema}",
        "/api/2.0/mcp/vector-search/{catalog}/{schema}/{index}",
    ],
    "functions": [
        "/api/2.0/mcp/functions/{catalog}/{schema}",
        "/api/2.0/mcp/functions/{catalog}/{schema}/{function}",
    ],
    "external": ["/api/2.0/mcp/external/{connection}"],
}


def _register() -> None:
    for kind, paths in _PATHS.items():
        for path in paths:

            async def handler(call: Call, kind: str = kind) -> Response:
                return await _serve(call, kind)

            route("POST", path)(handler)
            route("GET", path)(_no_stream)
            route("DELETE", path)(_no_stream)


_register()
