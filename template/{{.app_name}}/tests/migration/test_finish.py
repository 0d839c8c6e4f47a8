"""`migrate --finish` on a copy of this project: its refusals, its dry run, and the result."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent_cli.migration.finish import MIGRATION_MENTION
from agent_cli.migration.project import tree_digest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "*.db", "mlruns", ".env"
)
MIGRATED_AGENT = '''"""An agent moved from Model Serving: it echoes the last message."""

from collections.abc import Iterator

from mlflow.genai.agent_server import invoke, stream
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)


@invoke()
def invoke_handler(request: ResponsesAgentRequest) -> ResponsesAgentResponse:
    text = str(request.input[-1].content)
    return ResponsesAgentResponse(
        output=[
            {
                "type": "message",
                "id": "msg-1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text}],
            }
        ]
    )


@stream()
def stream_handler(request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
    for item in invoke_handler(request).output:
        yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)
'''
MIGRATION_ONLY = ["agent_cli/migration", "tests/migration", "tests/test_migration_scaffold.py"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT, copy, ignore=IGNORED)
    return copy


def finish(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`uv run migrate --finish` of the copy: its own agent_cli, this environment."""
    return subprocess.run(
        [sys.executable, "-m", "agent_cli.migration.cli", "--finish", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def set_agent(project: Path, source: str) -> None:
    (project / "agent_server" / "agent.py").write_text(source, encoding="utf-8")


def test_refuses_while_agent_is_the_scaffold(project: Path) -> None:
    before = tree_digest(project)
    result = finish(project, "--force", "--frozen")
    assert result.returncode == 2
    assert "still the scaffold" in result.stderr
    assert tree_digest(project) == before


def test_refuses_an_agent_without_invoke(project: Path) -> None:
    set_agent(project, '"""No handlers yet."""\n')
    before = tree_digest(project)
    result = finish(project, "--force", "--frozen")
    assert result.returncode == 2
    assert "no @invoke" in result.stderr
    assert tree_digest(project) == before


def test_refuses_when_the_migrated_agent_cannot_be_verified(project: Path) -> None:
    set_agent(project, MIGRATED_AGENT)
    before = tree_digest(project)
    result = finish(project, "--frozen")
    assert result.returncode == 2
    assert "cannot be verified" in result.stderr and "--force" in result.stderr
    assert tree_digest(project) == before


def test_dry_run_lists_the_changes_and_changes_nothing(project: Path) -> None:
    set_agent(project, MIGRATED_AGENT)
    before = tree_digest(project)
    result = finish(project, "--dry-run")
    assert result.returncode == 0, result.stderr
    for path in [*MIGRATION_ONLY, "pyproject.toml", "README.md"]:
        assert f"  {path}\n" in result.stdout + "\n"
    assert tree_digest(project) == before


def test_finished_project_has_no_migration_left(project: Path) -> None:
    set_agent(project, MIGRATED_AGENT)
    (project / "MIGRATION.md").write_text("# Migration report\n", encoding="utf-8")
    result = finish(project, "--force", "--frozen")
    assert result.returncode == 0, result.stderr

    for path in [*MIGRATION_ONLY, "MIGRATION.md"]:
        assert not (project / path).exists(), path
    for name in ("README.md", "AGENTS.md", "pyproject.toml"):
        text = (project / name).read_text(encoding="utf-8")
        assert not MIGRATION_MENTION.search(text), name
    assert "## The migrated agent" in (project / "README.md").read_text(encoding="utf-8")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert "migrate" not in pyproject["project"]["scripts"]
    assert "start-server" in pyproject["project"]["scripts"]
    assert not any("ruamel" in dep for dep in pyproject["project"]["dependencies"])
    assert not any("jsonschema" in dep for dep in pyproject["dependency-groups"]["dev"])

    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "tests/migration" not in collected.stdout
    subset = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_env_file.py::test_reads_values_as_load_dotenv_does",
            "tests/test_env_file.py::test_updates_keep_everything_else",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert subset.returncode == 0, subset.stdout[-3000:]
