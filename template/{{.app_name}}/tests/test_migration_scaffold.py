"""The migration scaffold boots and says clearly that the agent is not migrated yet.

Every test of the scaffold's own answer is here, so that the other tests hold for any agent and
this file leaves with the rest of the migration machinery (`uv run migrate --finish`).
"""

import os
from pathlib import Path

import httpx
import pytest

from agent_cli import preflight, test_agent
from tests.cli_support import cli_env, run_in_process
from tests.fake_workspace import FakeWorkspace
from tests.support import CHAT_PATH, stream, user_request
from tests.test_evaluate import evaluate


def test_invoke_answers_not_migrated_with_501(client: httpx.Client, agent_url: str) -> None:
    response = client.post(f"{agent_url}/invocations", json=user_request("hello"))
    assert response.status_code == 501
    assert "not been migrated yet" in response.json()["detail"]


def test_stream_ends_with_a_not_migrated_error_event(client: httpx.Client, agent_url: str) -> None:
    events = stream(client, f"{agent_url}/invocations", user_request("hello"))
    assert events[-1] == "[DONE]"
    assert "not been migrated yet" in events[-2]["error"]
    # The code the command-line tools (preflight, test-agent, evaluate) recognise the scaffold by.
    assert events[-2]["code"] == "not_implemented"


def test_server_keeps_serving_after_the_errors(client: httpx.Client, agent_url: str) -> None:
    for _ in range(3):
        client.post(f"{agent_url}/invocations", json=user_request("hello"))
    assert client.get(f"{agent_url}/health").status_code == 200


def check_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("  ok", "  FAIL"))]


def test_preflight_reports_that_the_scaffold_is_not_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The server preflight starts runs with this interpreter: PATH stays as it was.
    env = cli_env(tmp_path, PATH=os.environ["PATH"])
    args: list[object] = ["--env-file", tmp_path / "no.env"]
    result = run_in_process(preflight.main, args, env, monkeypatch, capsys)
    assert result.returncode == 1
    lines = check_lines(result.stdout)
    assert lines[1].startswith("  ok    GET /health")
    assert "bad status HTTP 501: This agent has not been migrated yet" in lines[2]
    assert "error event mid-stream" in lines[3]
    assert "hint: the agent answers 501 Not Implemented: write its @invoke and @stream" in (
        result.stderr
    )


def test_test_agent_reports_that_the_scaffold_is_not_migrated(
    agent_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args: list[object] = [agent_url, "--env-file", tmp_path / "no.env", "--timeout", "60"]
    result = run_in_process(test_agent.main, args, cli_env(tmp_path), monkeypatch, capsys)
    assert result.returncode == 1
    lines = check_lines(result.stdout)
    assert lines[0].startswith("  ok    GET /health")
    assert "bad status HTTP 501: This agent has not been migrated yet" in lines[1]
    assert "error event mid-stream" in lines[2] and "not been migrated yet" in lines[2]
    assert "2 of 3 checks failed" in result.stderr

    # A chat-style body is converted, not rejected: the scaffold's own 501 answers it.
    chat_args = [*args, "--chat-style", "--no-stream"]
    chat = run_in_process(test_agent.main, chat_args, cli_env(tmp_path), monkeypatch, capsys)
    assert "bad status HTTP 501: This agent has not been migrated yet" in chat.stdout


def test_evaluate_reports_that_the_scaffold_is_not_migrated(
    fake: FakeWorkspace, tmp_path: Path
) -> None:
    """Nothing to evaluate until the agent's code is moved in: a clear error, no run logged."""
    store = tmp_path / "evaluation.db"
    result = evaluate(fake, "--tracking-uri", f"sqlite:///{store}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: the agent is not written yet (HTTP 501): This agent has not been migrated" in (
        result.stderr
    )
    assert "hint: write its handlers in agent_server/agent.py" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store.exists()
    assert not [r for r in fake.requests if r.path == CHAT_PATH]
