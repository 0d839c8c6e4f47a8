"""`migrate --finish` on a copy of this project: its refusals, its dry run, and the result.

The copy starts from the same state whatever this project's own state is (migrated or not, with
or without a downloaded model or a report): each test writes the agent.py it needs. The command
runs in this process; only the finished copy's own tests run in a child process, with an
environment of their own.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent_cli.migration import finish as finish_module
from agent_cli.migration.cli import main
from agent_cli.migration.finish import ERRORS_FILE, MIGRATION_MENTION, build_finish_plan
from agent_cli.migration.planner import GITIGNORE_ADDITION
from agent_cli.migration.project import (
    MIGRATED_DIR,
    ORIGINAL_MODEL_DIR,
    PACKAGED_MODEL_DIR,
    RECORD_FILE,
    REPORT_FILE,
    tree_digest,
)
from agent_cli.migration.verify import Verification
from tests.fake_workspace import ENV_KEYS_TO_REMOVE
from tests.support import server_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Environments, caches, local stores and what a migration of this project itself left behind.
IGNORED = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "*.db",
    "mlruns",
    ".mlflow",
    ".databricks",
    ".env",
    ORIGINAL_MODEL_DIR,
    REPORT_FILE,
)
# A safety net for a machine under load: the finished copy's tests normally take seconds.
CHILD_TIMEOUT_SECONDS = 600
SCAFFOLD_AGENT = '''"""Not migrated yet."""

from mlflow.genai.agent_server import invoke

from agent_server.runtime.errors import NotMigratedError


@invoke()
async def invoke_handler(request):
    raise NotMigratedError("This agent has not been migrated yet.")
'''
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
REMOVED_MODULES = ("agent_cli.migration", "tests.migration", "tests.test_migration_scaffold")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT, copy, ignore=IGNORED)
    shutil.rmtree(copy / MIGRATED_DIR, ignore_errors=True)
    return copy


def finish(
    project: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`uv run migrate --finish ARGS` on the copy: exit code, stdout and stderr."""
    capsys.readouterr()
    argv = ["--finish", "--project-dir", str(project), *args]
    returncode = main(argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, returncode, captured.out, captured.err)


def set_agent(project: Path, source: str) -> None:
    (project / "agent_server" / "agent.py").write_text(source, encoding="utf-8")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def child_env() -> dict[str, str]:
    """This environment without workspace, MLflow or outer pytest settings, and no bytecode
    written into the copy."""
    env = server_env(
        {"AGENT_ENV_FILE": "/dev/null", "PYTHONDONTWRITEBYTECODE": "1"},
        remove=ENV_KEYS_TO_REMOVE,
    )
    return {key: value for key, value in env.items() if not key.startswith("PYTEST_")}


def test_refuses_while_agent_is_the_scaffold(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_agent(project, SCAFFOLD_AGENT)
    before = tree_digest(project)
    result = finish(project, capsys, "--force", "--frozen")
    assert result.returncode == 2
    assert "still the scaffold" in result.stderr and "Nothing was changed" in result.stderr
    assert tree_digest(project) == before


def test_refuses_an_agent_without_invoke(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    set_agent(project, '"""No handlers yet."""\n')
    before = tree_digest(project)
    result = finish(project, capsys, "--force", "--frozen")
    assert result.returncode == 2
    assert "no @invoke" in result.stderr
    assert tree_digest(project) == before


def test_refuses_when_the_migrated_agent_cannot_be_verified(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_agent(project, MIGRATED_AGENT)
    before = tree_digest(project)
    result = finish(project, capsys, "--frozen")
    assert result.returncode == 2
    assert "cannot be verified" in result.stderr and "--force" in result.stderr
    assert tree_digest(project) == before


def test_refuses_when_the_verification_fails(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_agent(project, MIGRATED_AGENT)
    (project / ORIGINAL_MODEL_DIR).mkdir()
    model = SimpleNamespace(input_example={"input": []}, from_code=True)
    monkeypatch.setattr(finish_module, "read_model", lambda directory: model)
    failed = Verification("failed", ["invoke: the answers differ"])
    monkeypatch.setattr(finish_module, "verify", lambda *args, **kwargs: failed)
    before = tree_digest(project)
    result = finish(project, capsys, "--frozen")
    assert result.returncode == 2
    assert "the verification failed: invoke: the answers differ" in result.stderr
    assert tree_digest(project) == before


def test_dry_run_lists_the_changes_and_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_agent(project, MIGRATED_AGENT)
    before = tree_digest(project)
    result = finish(project, capsys, "--dry-run")
    assert result.returncode == 0, result.stderr
    present = [path for path in MIGRATION_ONLY if (project / path).exists()]
    for path in [*present, "pyproject.toml", "README.md"]:
        assert f"  {path}\n" in result.stdout + "\n"
    assert "nothing was changed" in result.stdout
    assert tree_digest(project) == before


def test_the_scaffolds_error_stays_while_the_agent_names_it(project: Path) -> None:
    set_agent(project, MIGRATED_AGENT)
    assert ERRORS_FILE in build_finish_plan(project).rewrites
    import_line = "from agent_server.runtime.errors import NotMigratedError\n"
    set_agent(project, import_line + MIGRATED_AGENT)
    assert ERRORS_FILE not in build_finish_plan(project).rewrites


def test_the_readme_names_the_packaged_model_when_there_is_one(project: Path) -> None:
    set_agent(project, MIGRATED_AGENT)
    (project / PACKAGED_MODEL_DIR).mkdir(parents=True)
    readme = build_finish_plan(project).rewrites["README.md"].decode("utf-8")
    assert "kept with its artifacts in `agent_server/migrated/model/`" in readme


def test_finished_project_has_no_migration_left(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_agent(project, MIGRATED_AGENT)
    # What a migration leaves besides agent.py: its report, its record, a .gitignore entry.
    (project / REPORT_FILE).write_text("# Migration report\n", encoding="utf-8")
    (project / RECORD_FILE).parent.mkdir(parents=True, exist_ok=True)
    (project / RECORD_FILE).write_text("{}\n", encoding="utf-8")
    gitignore = project / ".gitignore"
    original_gitignore = gitignore.read_text(encoding="utf-8")
    gitignore.write_text(original_gitignore.rstrip("\n") + "\n" + GITIGNORE_ADDITION)
    result = finish(project, capsys, "--force", "--frozen")
    assert result.returncode == 0, result.stderr

    for path in [*MIGRATION_ONLY, REPORT_FILE, RECORD_FILE]:
        assert not (project / path).exists(), path
    assert gitignore.read_text(encoding="utf-8") == original_gitignore
    errors = (project / "agent_server" / "runtime" / "errors.py").read_text(encoding="utf-8")
    assert "NotMigratedError" not in errors and "class UpstreamError(AgentError):" in errors
    for name in ("README.md", "AGENTS.md", "pyproject.toml"):
        text = (project / name).read_text(encoding="utf-8")
        assert not MIGRATION_MENTION.search(text), name
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "## The migrated agent" in readme and "rewritten as its `@invoke`" in readme
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert "migrate" not in pyproject["project"]["scripts"]
    assert "start-server" in pyproject["project"]["scripts"]
    assert not any("ruamel" in dep for dep in pyproject["project"]["dependencies"])
    dev = pyproject["dependency-groups"]["dev"]
    assert not any("jsonschema" in dep for dep in dev)
    # The fake workspace's own tests still need their MCP client.
    assert any(dep.startswith("mcp") for dep in dev)

    # No remaining module imports what was removed (collecting the suite would fail).
    sources = [p for p in project.rglob("*.py") if ".venv" not in p.parts]
    for path in sources:
        stale = {m for m in imported_modules(path) if m.startswith(REMOVED_MODULES)}
        assert not stale, (path.relative_to(project), stale)

    # The finished copy's own tests run, conftest and all (`-m`: the copy's code comes first).
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
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert subset.returncode == 0, subset.stdout[-3000:] + subset.stderr[-3000:]
    assert "2 passed" in subset.stdout
