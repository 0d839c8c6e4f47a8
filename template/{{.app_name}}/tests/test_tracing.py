"""Tracing set-up: nothing written without a tracking store; versions only from a real commit."""

import os
import subprocess
from pathlib import Path

import mlflow
import pytest

from agent_server import tracing


@pytest.fixture
def no_commit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_GIT_COMMIT", raising=False)


def test_tracing_is_off_and_writes_nothing_without_a_tracking_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        assert tracing.configure_tracing() is False
        with mlflow.start_span("probe") as span:
            span.set_inputs({"x": 1})
        assert span.trace_id == "MLFLOW_NO_OP_SPAN_TRACE_ID"
        assert list(workdir.iterdir()) == []  # no mlflow.db, no mlruns/
    finally:
        # Re-enabling initializes a store: give it one outside the working directory.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'restored.db'}")
        mlflow.tracing.enable()


def test_commit_from_the_bundle_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_GIT_COMMIT", "abcdef0123456789")
    assert tracing.git_commit() == "abcdef0123456789"


def test_no_git_binary_means_no_version(
    no_commit_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without git
    assert tracing.git_commit() is None


def test_outside_a_checkout_there_is_no_version(
    no_commit_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert tracing.git_commit() is None


def test_a_checkout_gives_its_head(
    no_commit_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, timeout=30)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    monkeypatch.setattr(tracing, "PROJECT_ROOT", tmp_path)
    assert tracing.git_commit() == head


def test_no_version_is_recorded_without_a_commit(
    no_commit_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "git_commit", lambda: None)
    monkeypatch.delenv("MLFLOW_ACTIVE_MODEL_ID", raising=False)
    called: list[str] = []
    monkeypatch.setattr(mlflow, "set_active_model", lambda **kw: called.append(kw["name"]))
    tracing.track_version()
    assert called == []
    assert "MLFLOW_ACTIVE_MODEL_ID" not in os.environ
