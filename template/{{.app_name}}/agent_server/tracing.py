"""MLflow tracing for the agent: on when a tracking store is configured, off otherwise.

Left alone, mlflow traces into sqlite:///mlflow.db in the working directory, creating it on the
first request. Here tracing follows MLFLOW_TRACKING_URI: set (`databricks` on Apps, a profile or a
local store you chose), traces go there; unset, tracing is off and nothing is written.

Traces are exported by mlflow on background threads. `flush_traces()` runs at server shutdown
(start_server.py): uvicorn ends the process by re-raising SIGTERM, which skips mlflow's own
exit-time flush, and every trace still queued would be lost. The tracking store is outside the
app, so both version tracking at start and the flush at shutdown are time-bounded.

A local sqlite store is tuned for what it is, a file with one writer at a time (see
`tune_local_store`): profiled under load, exporting traces to it was most of the server's CPU.
"""

import logging
import os
import re
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import mlflow

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An abbreviated or full git commit id (SHA-1, or SHA-256 in repositories that use it).
COMMIT_HASH = re.compile(r"[0-9a-fA-F]{7,64}")
# Longest the server start waits for the tracking store (version tracking), and the shutdown
# for queued traces to be exported. Databricks Apps stops an app 15 s after SIGTERM.
TRACKING_TIMEOUT_SECONDS = float(os.environ.get("AGENT_TRACKING_TIMEOUT_SECONDS", "20"))
TRACE_FLUSH_TIMEOUT_SECONDS = float(os.environ.get("AGENT_TRACE_FLUSH_TIMEOUT_SECONDS", "4"))

_enabled = False


def configure_tracing() -> bool:
    """Turn tracing on or off from the environment; returns whether it is on."""
    global _enabled
    # mlflow fetches LLM prices from github.com for trace cost estimates: an outbound call the
    # app does not need (Apps may have no internet access). Use the catalog bundled with mlflow.
    os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.tracing.disable()
        logger.info(
            "Tracing is off: set MLFLOW_TRACKING_URI (uv run quickstart does) to record traces."
        )
        _enabled = False
        return False
    tune_local_store(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.tracing.enable()
    _enabled = True
    if not run_bounded(track_version, TRACKING_TIMEOUT_SECONDS):
        logger.warning(
            "Version tracking did not finish within %g s (AGENT_TRACKING_TIMEOUT_SECONDS): "
            "starting without it; the tracking store may be unreachable.",
            TRACKING_TIMEOUT_SECONDS,
        )
    elif model_id := os.environ.get("MLFLOW_ACTIVE_MODEL_ID"):
        # mlflow keeps the active model per thread, and track_version ran on a thread of its
        # own: set it here too, for the server's thread (the store has just answered).
        try:
            mlflow.set_active_model(model_id=model_id)
        except Exception as exc:
            logger.warning("Could not set the active model %s: %s", model_id, exc)
    return True


def tune_local_store(tracking_uri: str) -> None:
    """Fit mlflow's trace export to a local sqlite store (`sqlite:///<path>`); others untouched.

    sqlite takes one writer at a time, so mlflow's ten export threads only queue for its lock
    and spend CPU doing it: two suffice. Spans are written in batches of up to 50 rather than 5
    (fewer transactions), and the database is put in write-ahead-log mode, which it keeps, so a
    commit appends to one log file instead of creating and deleting a journal. Measured with
    bench/trace_export.py in the template repository. Variables already set win.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return
    os.environ.setdefault("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", "2")
    os.environ.setdefault("MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE", "50")
    location = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if location in ("", ":memory:"):
        return
    path = Path(location)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=5) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
    except (OSError, sqlite3.Error) as exc:  # mlflow will say what is wrong; still serve
        logger.warning("Could not put %s in write-ahead-log mode: %s", path, exc)


def flush_traces(timeout: float = TRACE_FLUSH_TIMEOUT_SECONDS) -> bool:
    """Export every finished trace still queued; False if that took longer than `timeout`."""
    if not _enabled:
        return True
    done = run_bounded(lambda: mlflow.flush_trace_async_logging(terminate=True), timeout)
    if done:
        logger.info("Queued traces exported.")
    else:
        logger.warning("Queued traces were not all exported within %g s.", timeout)
    return done


def run_bounded(func: Callable[[], object], timeout: float) -> bool:
    """Run `func` on a daemon thread; True if it returned (or raised) within `timeout` s.

    A call that overruns goes on in the background; as a daemon it never holds up the exit.
    """

    def run() -> None:
        try:
            func()
        except Exception:
            logger.warning("%s failed", getattr(func, "__name__", "call"), exc_info=True)

    thread = threading.Thread(target=run, name="tracing-bounded-call", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def git_commit() -> str | None:
    """The deployed commit: AGENT_GIT_COMMIT (set by the bundle), else the local checkout's HEAD.

    Only a commit hash counts: the bundle sets "none" when the deploy passed no commit, and an
    empty value is the same as none."""
    commit = os.environ.get("AGENT_GIT_COMMIT", "").strip()
    if COMMIT_HASH.fullmatch(commit):
        return commit
    git = shutil.which("git")
    if git is None:
        return None
    try:
        result = subprocess.run(
            [git, "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def track_version() -> None:
    """Link traces to a LoggedModel named after the app and its commit.

    Without a known commit no version is recorded, rather than filing every deployment under one
    "no-git" version. Failures are logged, never raised: tracing must not stop the server.
    """
    commit = git_commit()
    if commit is None:
        logger.info(
            "No git commit known (AGENT_GIT_COMMIT unset, no git checkout): version not tracked."
        )
        return
    name = f"{os.environ.get('DATABRICKS_APP_NAME') or 'local'}-git-{commit[:8]}"
    try:
        model = mlflow.set_active_model(name=name)
    except Exception as exc:  # the tracking store may be unreachable; serve anyway
        logger.warning("Could not set the active model %s for version tracking: %s", name, exc)
        return
    # Request threads read the active model from the environment, not this thread's state.
    os.environ["MLFLOW_ACTIVE_MODEL_ID"] = model.model_id
    logger.info("Traces are linked to LoggedModel %s (%s).", name, model.model_id)
