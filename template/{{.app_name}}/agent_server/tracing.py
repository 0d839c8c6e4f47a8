"""MLflow tracing for the agent: on when a tracking store is configured, off otherwise.

Left alone, mlflow traces into sqlite:///mlflow.db in the working directory, creating it on the
first request. Here tracing follows MLFLOW_TRACKING_URI: set (`databricks` on Apps, a profile or a
local store you chose), traces go there; unset, tracing is off and nothing is written.
"""

import logging
import os
import shutil
import subprocess
from pathlib import Path

import mlflow

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def configure_tracing() -> bool:
    """Turn tracing on or off from the environment; returns whether it is on."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.tracing.disable()
        logger.info(
            "Tracing is off: set MLFLOW_TRACKING_URI (uv run quickstart does) to record traces."
        )
        return False
    mlflow.tracing.enable()
    track_version()
    return True


def git_commit() -> str | None:
    """The deployed commit: AGENT_GIT_COMMIT (set by the bundle), else the local checkout's HEAD."""
    if commit := os.environ.get("AGENT_GIT_COMMIT", "").strip():
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
