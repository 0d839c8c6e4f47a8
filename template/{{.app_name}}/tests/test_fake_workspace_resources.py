"""The fake workspace's managed MCP servers and Lakebase routes, through the real clients: the
`mcp` package's streamable HTTP client and databricks-sdk."""

import asyncio
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, NotFound
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from tests.fake_workspace import FakeWorkspace
from tests.fake_workspace.mcp_api import (
    external_tool,
    function_tool,
    genie_tool,
    tool_result,
    vector_search_tool,
)

SERVERS = {
    "/api/2.0/mcp/genie/01ef0123456789abcdef0123456789ab": genie_tool(
        "01ef0123456789abcdef0123456789ab"
    ),
    "/api/2.0/mcp/vector-search/main/docs/faq_index": vector_search_tool("main.docs.faq_index"),
    "/api/2.0/mcp/functions/main/tools": function_tool("main.tools"),
    "/api/2.0/mcp/functions/main/tools/add_numbers": function_tool("main.tools.add_numbers"),
    "/api/2.0/mcp/external/github-mcp": external_tool("github-mcp"),
}


async def _session_calls(url: str, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with streamablehttp_client(url, headers=headers, timeout=10) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool(tool, arguments)
            return tools, result


def _failed_status(url: str, token: str, tool: str) -> int:
    """The HTTP status the MCP client failed on (inside the task group it raises)."""
    try:
        asyncio.run(_session_calls(url, token, tool, {}))
    except ExceptionGroup as group:
        [error] = group.exceptions
        assert isinstance(error, httpx.HTTPStatusError), error
        return error.response.status_code
    raise AssertionError("the MCP session did not fail")


@pytest.mark.parametrize("path", list(SERVERS))
def test_managed_mcp_server_lists_and_calls_its_tool(
    fake_workspace: FakeWorkspace, path: str
) -> None:
    tool = SERVERS[path]
    arguments = {"query": "shipping times"}
    tools, result = asyncio.run(
        _session_calls(fake_workspace.url + path, fake_workspace.settings.token, tool, arguments)
    )
    assert [t.name for t in tools.tools] == [tool]
    assert tools.tools[0].inputSchema["type"] == "object"
    assert not result.isError
    assert result.content[0].text == tool_result(tool, arguments)
    methods = [r.body.get("method") for r in fake_workspace.requests if r.path == path]
    assert methods[:3] == ["initialize", "notifications/initialized", "tools/list"]
    assert "tools/call" in methods


def test_tool_names_follow_the_managed_servers() -> None:
    assert genie_tool("abc") == "query_space_abc"
    assert vector_search_tool("main.docs.faq_index") == "main__docs__faq_index"
    assert function_tool("main.tools.add_numbers") == "main__tools__add_numbers"


def test_failing_tool_and_down_server(fake: FakeWorkspace) -> None:
    path = "/api/2.0/mcp/external/github-mcp"
    tool = external_tool("github-mcp")
    fake.configure(mcp_failing=(tool,))
    _, result = asyncio.run(_session_calls(fake.url + path, fake.settings.token, tool, {}))
    assert result.isError
    fake.configure(mcp_down=("external",))
    assert _failed_status(fake.url + path, fake.settings.token, tool) == 503


def test_mcp_needs_the_token(fake: FakeWorkspace) -> None:
    path = "/api/2.0/mcp/genie/x"
    assert _failed_status(fake.url + path, "dapi-wrong", genie_tool("x")) == 401
    assert [r.path for r in fake.requests] == [path]


def test_lakebase_instance_and_credentials(fake_env: FakeWorkspace) -> None:
    client = WorkspaceClient()
    with pytest.raises(NotFound):
        client.database.get_database_instance("agent-memory")
    fake_env.configure(lakebase_host="/tmp/pg-socket", lakebase_token="pg-password")
    instance = client.database.get_database_instance("agent-memory")
    assert (instance.name, instance.read_write_dns) == ("agent-memory", "/tmp/pg-socket")
    credential = client.database.generate_database_credential(
        request_id="r1", instance_names=["agent-memory"]
    )
    assert credential.token == "pg-password"
    assert credential.expiration_time


def test_lakebase_autoscaling_endpoints_and_credentials(fake_env: FakeWorkspace) -> None:
    """The calls databricks-ai-bridge's pools make for a project's branch, through the SDK."""
    client = WorkspaceClient()
    branch = "projects/agent-memory/branches/production"
    with pytest.raises(NotFound):
        list(client.postgres.list_endpoints(parent=branch))
    fake_env.configure(lakebase_host="/tmp/pg-socket", lakebase_token="pg-password")
    [endpoint] = client.postgres.list_endpoints(parent=branch)
    assert endpoint.name == f"{branch}/endpoints/primary"
    assert endpoint.status.endpoint_type.value == "ENDPOINT_TYPE_READ_WRITE"
    assert endpoint.status.hosts.host == "/tmp/pg-socket"
    assert client.postgres.get_endpoint(endpoint.name).name == endpoint.name
    with pytest.raises(NotFound):
        client.postgres.get_endpoint(f"{branch}/endpoints/other")
    credential = client.postgres.generate_database_credential(endpoint=endpoint.name)
    assert credential.token == "pg-password"
    with pytest.raises(DatabricksError) as bad:
        client.postgres.generate_database_credential(endpoint="agent-memory")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
