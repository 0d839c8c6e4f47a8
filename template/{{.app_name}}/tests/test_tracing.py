"""Tracing set-up: nothing written without a tracking store; versions only from a real commit."""

import contextlib
import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import mlflow
import pytest

from agent_server.runtime import tracing

EXPORT_SETTINGS = (
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE",
)


@pytest.fixture
def no_commit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_GIT_COMMIT", raising=False)


@pytest.fixture
def no_export_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXPORT_SETTINGS:  # set first, so that teardown restores what was there
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def journal_mode(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]


def test_a_local_sqlite_store_gets_few_writers_batches_and_a_write_ahead_log(
    no_export_settings: None, tmp_path: Path
) -> None:
    db = tmp_path / "store" / "mlflow.db"
    tracing.tune_local_store(f"sqlite:///{db}")
    assert [os.environ[name] for name in EXPORT_SETTINGS] == ["2", "50"]
    assert journal_mode(db) == "wal"


def test_export_settings_already_made_win(
    no_export_settings: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", "7")
    tracing.tune_local_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert os.environ["MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS"] == "7"


@pytest.mark.parametrize("uri", ["databricks", "databricks://my-profile", "http://127.0.0.1:5000"])
def test_other_stores_keep_mlflow_defaults(
    no_export_settings: None, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tracing.tune_local_store(uri)
    assert [name for name in EXPORT_SETTINGS if name in os.environ] == []
    assert list(tmp_path.iterdir()) == []


def test_a_store_that_is_not_a_database_is_left_to_mlflow(
    no_export_settings: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_db = tmp_path / "mlflow.db"
    not_a_db.write_text("not sqlite " * 100)
    tracing.tune_local_store(f"sqlite:///{not_a_db}")  # warns, never raises
    assert "write-ahead-log" in caplog.text
    assert not_a_db.read_text() == "not sqlite " * 100


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
        # Re-enabling initializes a store: give it one of its own, outside the working directory.
        # mlflow.set_tracking_uri too, as it wins over the environment and an earlier test may
        # have pointed it at another test's store.
        restored = f"sqlite:///{tmp_path / 'restored.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", restored)
        mlflow.set_tracking_uri(restored)
        mlflow.tracing.enable()


def test_commit_from_the_bundle_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_GIT_COMMIT", "abcdef0123456789")
    assert tracing.git_commit() == "abcdef0123456789"


@pytest.mark.parametrize("value", ["", "  ", "none", "${bundle.git.commit}", "main"])
def test_a_value_that_is_not_a_commit_is_unset(
    no_commit_env: None, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # databricks.yml's default when no commit was passed is "none"; nothing but a hash counts.
    monkeypatch.setenv("AGENT_GIT_COMMIT", value)
    monkeypatch.setattr(tracing, "PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert tracing.git_commit() is None


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


def test_trace_export_failures_are_one_warning_then_one_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    export_logger = logging.getLogger("tests.trace_export")
    export_filter = tracing.ExportFailureFilter(interval=300, clock=lambda: now[0])
    export_logger.addFilter(export_filter)
    try:
        with caplog.at_level(logging.WARNING, logger="tests.trace_export"):
            for attempt in range(5):  # as mlflow logs them: one per dropped trace
                export_logger.warning("Failed to send trace to MLflow backend: 503 #%d", attempt)
            now[0] += 301
            export_logger.warning("Failed to send trace to MLflow backend: 503 #%d", 5)
    finally:
        export_logger.removeFilter(export_filter)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("Traces are not reaching the tracking store")
    assert messages[0].endswith("Failed to send trace to MLflow backend: 503 #0")
    assert messages[1].startswith("5 more traces were not saved in the last 300 s")
