"""Running commands inside a rendered project, isolated from this repository's environment."""

import os
import subprocess
from pathlib import Path


def project_env() -> dict[str, str]:
    """This environment minus this repository's virtualenv and any Databricks or MLflow settings.

    BUNDLE_SCHEMA, when set, is made absolute: the project's tests run in its own folder.
    PYTHONDONTWRITEBYTECODE (set on some machines) is dropped: with it every interpreter a
    project starts (servers, CLI tools) would compile again every module it imports.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
        and not key.startswith(("DATABRICKS_", "MLFLOW_"))
    }
    if env.get("BUNDLE_SCHEMA"):
        env["BUNDLE_SCHEMA"] = str(Path(env["BUNDLE_SCHEMA"]).resolve())
    return env


def run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=project_env(), capture_output=True, text=True, timeout=timeout
    )
