"""Where the evaluation's results go, and whether the LLM judges run.

The project's experiment (MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID, which quickstart writes to
.env), or `--tracking-uri`, or else a temporary local store (sqlite, its trace artifacts beside
it) that is deleted at exit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agent_cli import console
from agent_cli.console import CliError
from agent_cli.project import APP_NAME

LOCAL_EXPERIMENT_NAME = f"{APP_NAME}-evaluation"


@dataclass
class Tracking:
    uri: str
    experiment_id: str
    is_databricks: bool
    temporary_dir: str | None = None
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.temporary_dir:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)


def configure_tracking(tracking_uri: str | None, experiment_id: str | None) -> Tracking:
    import mlflow
    from mlflow.utils.uri import is_databricks_uri

    from_environment = not tracking_uri and bool(os.environ.get("MLFLOW_TRACKING_URI"))
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    temporary_dir = None
    if not uri:
        temporary_dir = tempfile.mkdtemp(prefix="agent-evaluate-")
        uri = f"sqlite:///{temporary_dir}/mlflow.db"
    experiment_id = experiment_id or (
        os.environ.get("MLFLOW_EXPERIMENT_ID") if from_environment else None
    )
    # mlflow reads these itself; from here on the values chosen above decide.
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
    mlflow.set_tracking_uri(uri)
    tracking = Tracking(uri, "", is_databricks_uri(uri), temporary_dir)
    try:
        if experiment_id:
            experiment = mlflow.set_experiment(experiment_id=experiment_id)
        else:
            if temporary_dir and mlflow.get_experiment_by_name(LOCAL_EXPERIMENT_NAME) is None:
                # Trace artifacts in the temporary folder too, not in ./mlruns.
                artifacts = Path(temporary_dir, "artifacts").as_uri()
                mlflow.create_experiment(LOCAL_EXPERIMENT_NAME, artifact_location=artifacts)
            experiment = mlflow.set_experiment(LOCAL_EXPERIMENT_NAME)
    except Exception as exc:
        tracking.close()
        raise CliError(
            f"cannot use the MLflow experiment ({_short(exc)}) at {console.redact(uri)}",
            hint="check MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID (uv run quickstart sets "
            "them), or pass --tracking-uri sqlite:///evaluation.db for a local store",
        ) from None
    tracking.experiment_id = experiment.experiment_id
    if temporary_dir:
        tracking.notes.append(
            "a temporary local MLflow store, deleted at exit (keep the results with "
            "--tracking-uri sqlite:///evaluation.db, or log them to the project's experiment "
            "with MLFLOW_TRACKING_URI in .env)"
        )
    return tracking


def judges_enabled(choice: str, tracking: Tracking) -> tuple[bool, str]:
    if choice == "on":
        return True, "on (--judges on)"
    if choice == "off":
        return False, "off (--judges off)"
    if tracking.is_databricks:
        return True, "on (results go to a Databricks workspace)"
    return False, (
        "off: the results do not go to a Databricks workspace, so there is none to judge with "
        "(--judges on runs them anyway, on the serving endpoint)"
    )


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
