"""Running commands inside a rendered project, isolated from this repository's environment."""

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def background(
    args: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[str]]:
    """`args` running while the block runs, its output in `log`; stopped with SIGTERM after."""
    with log.open("w") as out:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# Servers are started on port 0 and say which port they bound: a port picked here would be free
# only until another process took it, and the wait for /health would then ask that process.
# uvicorn's start-up line (it names the bound port also when asked for port 0):
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")
# The first line of `python -m tests.fake_workspace --port 0`:
FAKE_WORKSPACE_URL = re.compile(r"^FAKE_WORKSPACE_URL=(\S+)$", re.MULTILINE)


def wait_for_match(
    log: Path, pattern: re.Pattern[str], process: subprocess.Popen[str], timeout: float = 120
) -> str:
    """The first group of `pattern` once `process` has written a match to `log`; fails if the
    process exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if match := pattern.search(log.read_text()):
            return match.group(1)
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"no {pattern.pattern!r} after {timeout} s:\n{log.read_text()}")


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
