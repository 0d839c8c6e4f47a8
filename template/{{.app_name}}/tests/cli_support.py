"""Helpers for the tests of the agent_cli tools: run them as the console scripts `uv sync`
installed, in an environment that reaches nothing but the fakes of the test."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fake_workspace import ENV_KEYS_TO_REMOVE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The console scripts of [project.scripts] sit next to the interpreter of the environment.
SCRIPTS_DIR = Path(sys.executable).parent
CLI_TIMEOUT_SECONDS = 180


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without Databricks or MLflow settings, with a config file
    and a PATH of the test's own (tmp_path/bin: put fake tools there), plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ENV_KEYS_TO_REMOVE and not key.startswith(("DATABRICKS_", "MLFLOW_"))
    }
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    env["PATH"] = str(bin_dir)
    env["DATABRICKS_CONFIG_FILE"] = str(tmp_path / "databrickscfg")
    # The tools find uv through UV (set by `uv run`), as PATH holds only the fakes.
    env["UV"] = os.environ.get("UV") or shutil.which("uv") or ""
    env.update(extra)
    return env


def run_cli(
    script: str,
    *args: object,
    env: dict[str, str],
    cwd: Path,
    timeout: float = CLI_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    """Run a console script of the project with stdin that is not a terminal."""
    return subprocess.run(
        [str(SCRIPTS_DIR / script), *map(str, args)],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_in_process(
    main: Callable[[list[str]], int],
    args: list[object],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> subprocess.CompletedProcess[str]:
    """`main(args)` in this process with exactly `env` and a stdin that is not a terminal: the
    same code as the console script, without paying for a new interpreter and its imports."""
    argv = list(map(str, args))
    capsys.readouterr()
    with monkeypatch.context() as patch:
        for key in list(os.environ):
            if key not in env:
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setattr(sys, "stdin", io.StringIO(""))
        returncode = main(argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, returncode, captured.out, captured.err)


def write_profiles(path: Path, profiles: dict[str, dict[str, str]]) -> None:
    """A Databricks config file with these profiles ([DEFAULT] first when present)."""
    sections = [
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
        for name, settings in profiles.items()
    ]
    path.write_text("\n".join(sections), encoding="utf-8")


def write_executable(path: Path, python_source: str) -> Path:
    """An executable Python script run by this interpreter (a fake command-line tool)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{python_source}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


# A finished agent.py for a copy of the project: echoes the last message, streaming or not.
ECHO_AGENT = '''"""An agent for the tests: echoes the last user message."""

from collections.abc import Iterator

from mlflow.genai.agent_server import invoke, stream
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
    create_text_delta,
    create_text_output_item,
)


def reply(request: ResponsesAgentRequest) -> str:
    content = request.input[-1].model_dump().get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content)
    return f"Echo: {content}"


@invoke()
def invoke_handler(request: ResponsesAgentRequest) -> ResponsesAgentResponse:
    return ResponsesAgentResponse(output=[create_text_output_item(reply(request), "msg_echo")])


@stream()
def stream_handler(request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
    text = reply(request)
    for word in text.split(" "):
        yield ResponsesAgentStreamEvent(**create_text_delta(word + " ", "msg_echo"))
    item = create_text_output_item(text, "msg_echo")
    yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)
'''

# An agent.py that cannot even be imported.
BROKEN_AGENT = 'raise RuntimeError("agent.py failed to import: model file missing")\n'


def project_copy(tmp_path: Path, agent_source: str) -> Path:
    """A copy of this project's code with another agent.py. Run its tools with
    `python -m agent_cli.<tool>` from the copy: the copy's packages then come first."""
    root = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("agent_server", "agent_cli"):
        shutil.copytree(PROJECT_ROOT / package, root / package, ignore=ignore)
    shutil.copy(PROJECT_ROOT / "input_example.json", root)
    (root / "agent_server" / "agent.py").write_text(agent_source, encoding="utf-8")
    return root


def run_module(
    root: Path, tool: str, *args: object, env: dict[str, str], timeout: float = CLI_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    """`python -m agent_cli.<tool>` in the project copy at `root`."""
    return subprocess.run(
        [sys.executable, "-m", f"agent_cli.{tool}", *map(str, args)],
        env=env,
        cwd=root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
