"""Reads an MLflow model directory (MLmodel, requirements, input example) without running it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from agent_cli.migration.errors import MigrationError

RESPONSES_AGENT_TASK = "agent/v1/responses"
OTHER_AGENT_TASKS = {
    "agent/v1/chat": "an MLflow ChatModel",
    "agent/v2/chat": "an MLflow ChatAgent",
}
CODE_MODEL_LOADER = "mlflow.pyfunc.loaders.code_model"


@dataclass(frozen=True)
class ModelInfo:
    """What migrate needs from a ResponsesAgent logged with mlflow.pyfunc.log_model."""

    directory: Path
    mlmodel: dict[str, Any]
    from_code: bool  # logged from a code file with set_model(), else a pickled python_model
    model_file: str  # the code file or the pickle, relative to the model directory
    code_dir: str | None  # code_paths, relative to the model directory, put on sys.path
    artifacts: dict[str, str]  # name -> path relative to the model directory
    model_config: dict[str, Any] | None
    resources: dict[str, Any] | None
    auth_policy: dict[str, Any] | None
    requirements: list[str]
    input_example: dict[str, Any] | None
    python_version: str | None
    mlflow_version: str | None
    env_vars: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        if self.from_code:
            return f"logged from code ({self.model_file}, mlflow.models.set_model)"
        return f"a pickled python_model ({self.model_file})"

    def files(self) -> list[str]:
        """Every file of the model, relative to its directory, sorted."""
        return sorted(
            path.relative_to(self.directory).as_posix()
            for path in self.directory.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        )


def read_model(directory: Path) -> ModelInfo:
    """The model in `directory`, checked to be a ResponsesAgent MLflow can load."""
    if not directory.is_dir():
        raise MigrationError(f"{directory} is not a directory.")
    mlmodel_path = directory / "MLmodel"
    if not mlmodel_path.is_file():
        raise MigrationError(
            f"{directory} is not an MLflow model: it has no MLmodel file. Pass the directory "
            "that mlflow.artifacts.download_artifacts('models:/<name>/<version>') created."
        )
    try:
        mlmodel = yaml.safe_load(mlmodel_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MigrationError(f"{mlmodel_path} is not valid YAML: {exc}") from exc
    if not isinstance(mlmodel, dict):
        raise MigrationError(f"{mlmodel_path} is not an MLmodel file (not a YAML mapping).")

    flavors = mlmodel.get("flavors") or {}
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    if not isinstance(pyfunc, dict):
        raise MigrationError(
            f"{mlmodel_path} has no python_function flavor: only models logged with "
            "mlflow.pyfunc.log_model can be migrated."
        )
    _check_responses_agent(mlmodel, mlmodel_path)

    from_code, model_file = _model_file(pyfunc, mlmodel_path)
    if not (directory / model_file).is_file():
        raise MigrationError(f"{mlmodel_path} names {model_file}, which is not in {directory}.")
    code_dir = pyfunc.get("code") or None
    if code_dir is not None and not (directory / code_dir).is_dir():
        raise MigrationError(f"{mlmodel_path} names code directory {code_dir}, which is missing.")
    artifacts = {
        str(name): str((info or {}).get("path", ""))
        for name, info in (pyfunc.get("artifacts") or {}).items()
    }
    for name, relative in artifacts.items():
        if not relative or not (directory / relative).exists():
            raise MigrationError(f"Artifact {name!r} ({relative}) is missing from {directory}.")

    return ModelInfo(
        directory=directory,
        mlmodel=mlmodel,
        from_code=from_code,
        model_file=model_file,
        code_dir=code_dir,
        artifacts=artifacts,
        model_config=pyfunc.get("config") or None,
        resources=mlmodel.get("resources") or None,
        auth_policy=mlmodel.get("auth_policy") or None,
        requirements=_requirements(directory / "requirements.txt"),
        input_example=_input_example(directory, mlmodel),
        python_version=pyfunc.get("python_version"),
        mlflow_version=mlmodel.get("mlflow_version"),
        env_vars=[str(name) for name in mlmodel.get("env_vars") or []],
    )


def _check_responses_agent(mlmodel: dict[str, Any], path: Path) -> None:
    task = (mlmodel.get("metadata") or {}).get("task")
    if task == RESPONSES_AGENT_TASK:
        return
    if task in OTHER_AGENT_TASKS:
        what = OTHER_AGENT_TASKS[task]
    elif task:
        what = f"a model for task {task!r}"
    else:
        what = "not an MLflow ResponsesAgent (metadata.task is not set)"
    raise MigrationError(
        f"{path} has no ResponsesAgent: the model is {what}. migrate moves models whose "
        f"MLmodel says metadata.task: {RESPONSES_AGENT_TASK} (mlflow.pyfunc.ResponsesAgent)."
    )


def _model_file(pyfunc: dict[str, Any], path: Path) -> tuple[bool, str]:
    code_path = pyfunc.get("model_code_path")
    if code_path or pyfunc.get("loader_module") == CODE_MODEL_LOADER:
        if not code_path:
            raise MigrationError(f"{path} is a code model without model_code_path.")
        # MLflow records the path the code was logged from and loads its basename.
        return True, PurePosixPath(str(code_path).replace("\\", "/")).name
    pickled = pyfunc.get("python_model")
    if not pickled:
        raise MigrationError(f"{path} names neither model code nor a pickled python_model.")
    return False, str(pickled)


def _requirements(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _input_example(directory: Path, mlmodel: dict[str, Any]) -> dict[str, Any] | None:
    info = mlmodel.get("saved_input_example_info") or {}
    name = info.get("artifact_path") or "input_example.json"
    path = directory / name
    if not path.is_file():
        return None
    try:
        example = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise MigrationError(f"{path} is not valid JSON: {exc}") from exc
    return example if isinstance(example, dict) else None
