"""The OpenAI Agents SDK project's agent.py holds the owner's agent and nothing else.

agent.py is the file its owner edits: the model, the instructions, the tools, the Agent and the
@invoke/@stream handlers. Running the agent (building it once, per-thread agents for sync code,
trace spans, the streamed run) lives in agent_server/runtime/, so the file stays short and
every line of it is theirs to change.
"""

from __future__ import annotations

import ast
import difflib
from pathlib import Path
from typing import Any

import pytest
from conftest import render

MAX_LINES = 90
# Names that belong to the wiring in agent_server/runtime/, never to agent.py.
WIRING = (
    "threading",
    "asyncio",
    "Lock",
    "global ",
    "new_event_loop",
    "run_until_complete",
    "Runner.run",
    "RunHooks",
    "TraceSteps",
    "mlflow.start_span",
    "get_current_active_span",
    "set_tracing_disabled",
    "load_mcp_tools",
    "wait_for_workspace_client",
    "LLM_TIMEOUT_SECONDS",
    "lru_cache",
    "functools",
)
VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "genie-tool": {"genie_space_id": "01ef0123456789abcdef0123456789ab"},
    "sub-agent": {"subagents": "apps/other-app"},
}


def render_agent(tmp_path: Path, is_async: str, extra: dict[str, str]) -> str:
    config: dict[str, Any] = {
        "app_name": "my-agent",
        "agent_framework": "openai-agents",
        "async": is_async,
        **extra,
    }
    out = tmp_path / f"out-{is_async}"
    result = render(config, out)
    assert result.returncode == 0, result.stderr
    return (out / "my-agent" / "agent_server" / "agent.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("is_async", ["yes", "no"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_agent_file_is_short_and_free_of_wiring(
    tmp_path: Path, is_async: str, variant: str
) -> None:
    source = render_agent(tmp_path, is_async, VARIANTS[variant])
    lines = source.splitlines()
    assert len(lines) <= MAX_LINES, f"agent.py has {len(lines)} lines, more than {MAX_LINES}"
    assert [word for word in WIRING if word in source] == []
    tree = ast.parse(source)
    assert [node.name for node in tree.body if isinstance(node, ast.ClassDef)] == []
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    functions |= {node.name for node in tree.body if isinstance(node, ast.AsyncFunctionDef)}
    assert {"build_agent", "invoke_handler", "stream_handler"} <= functions
    for name in ("SYSTEM_PROMPT", "TOOLS: list[Tool]", "Agent(", "@invoke()", "@stream()"):
        assert name in source
    assert ("subagent_tools()" in source) is (variant == "sub-agent")


def test_sync_and_async_agent_files_differ_only_in_their_handlers(tmp_path: Path) -> None:
    async_lines = render_agent(tmp_path, "yes", {}).splitlines()
    sync_lines = render_agent(tmp_path, "no", {}).splitlines()
    changed = [
        line
        for line in difflib.unified_diff(async_lines, sync_lines, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    # The docstring's note on worker threads, the iterator imports and the handlers' keywords.
    assert len(changed) <= 20, "\n".join(changed)
