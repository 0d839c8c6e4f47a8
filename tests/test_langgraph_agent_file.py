"""The LangGraph agent.py is the owner's file: small, and none of the plumbing it runs on.

Tracing, the once-per-process build under a lock and the memory's turn handling live in
agent_server/runtime/; agent.py keeps the model, the prompt, the tools, the graph and the
@invoke/@stream handlers. These checks render it sync and async, with and without memory and a
Genie tool, and look at what it holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import OPTIONAL_TEXT_SAMPLES, render

# The rendered agent.py of the default prompts stays at most this long.
MAX_DEFAULT_LINES = 100
# Any of these in agent.py is plumbing that belongs in runtime/.
WIRING = re.compile(
    r"\bLock\b|threading|asyncio|TraceSteps\(AgentMiddleware|start_span|global |\b_agent\b"
    r"|get_state|conversation_ids|checkpoint_config|new_messages|run_sync"
)

VARIANTS: dict[str, dict[str, Any]] = {
    "async": {"async": "yes"},
    "sync": {"async": "no"},
    "async-memory": {
        "async": "yes",
        "memory": "short-and-long-term",
        "lakebase_project": OPTIONAL_TEXT_SAMPLES["lakebase_project"],
    },
    "sync-memory": {
        "async": "no",
        "memory": "short-and-long-term",
        "lakebase_project": OPTIONAL_TEXT_SAMPLES["lakebase_project"],
    },
    "async-genie": {"async": "yes", "genie_space_id": OPTIONAL_TEXT_SAMPLES["genie_space_id"]},
    "sync-genie": {"async": "no", "genie_space_id": OPTIONAL_TEXT_SAMPLES["genie_space_id"]},
}


def agent_file(tmp_path: Path, prompts: dict[str, Any]) -> str:
    config = {"app_name": "my-agent", "agent_framework": "langgraph", **prompts}
    result = render(config, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    return (tmp_path / "out" / "my-agent" / "agent_server" / "agent.py").read_text("utf-8")


@pytest.mark.parametrize("name", VARIANTS)
def test_agent_file_holds_no_wiring(tmp_path: Path, name: str) -> None:
    code = agent_file(tmp_path, VARIANTS[name])
    assert not WIRING.findall(code)
    for part in ("SYSTEM_PROMPT =", "TOOLS: list[BaseTool] =", "def build_agent(", "@invoke()"):
        assert part in code
    assert "@stream()" in code
    is_async = VARIANTS[name]["async"] == "yes"
    assert ("async def invoke_handler" in code) == is_async
    assert ("async def stream_handler" in code) == is_async


@pytest.mark.parametrize("name", ["async", "sync"])
def test_default_agent_file_is_short(tmp_path: Path, name: str) -> None:
    lines = agent_file(tmp_path, VARIANTS[name]).splitlines()
    assert len(lines) <= MAX_DEFAULT_LINES, f"agent.py has {len(lines)} lines"


def test_the_wiring_check_flags_plumbing() -> None:
    assert WIRING.search("_agent_lock = asyncio.Lock()")
    assert WIRING.search("class TraceSteps(AgentMiddleware):")
    assert WIRING.search("    state = await agent.aget_state(config)")
    assert not WIRING.search("get_agent = agent_loader(build_agent)")
