"""Running commands inside a rendered project, isolated from this repository's environment."""

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(
    url: str,
    timeout: float = 120,
    process: subprocess.Popen[str] | None = None,
    log: Path | None = None,
) -> None:
    """Until `url`/health answers 200; fails at once if `process` (the server) exits. A failure
    shows the server's `log`."""

    def with_log(message: str) -> str:
        return f"{message}:\n{log.read_text()}" if log else message

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as http:  # one client: each new one loads the CA bundle again
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise AssertionError(with_log(f"exited with {process.returncode}"))
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{url}/health").status_code == 200:
                    return
            time.sleep(0.2)
    raise AssertionError(with_log(f"{url} not healthy after {timeout} s"))
