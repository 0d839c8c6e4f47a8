"""Run the project's agent server as a child process on a local port, until it is healthy.

The one place that starts `start-server` as a child: the project's commands and its tests all
use it. The server binds a port the system picks (port 0) and its log says which: a port picked
here and handed over would be free only until something else took it, and the wait for /health
would then ask whatever answers there.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from agent_cli.console import CliError

POLL_SECONDS = 0.2
STOP_TIMEOUT_SECONDS = 15
LOG_TAIL_LINES = 40
SERVER_ARGS = ("--host", "127.0.0.1", "--port", "0")
# uvicorn's start-up line, with the port it bound (also when it was asked for port 0).
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@dataclass
class LocalServer:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    boot_seconds: float = 0.0

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@contextlib.contextmanager
def running(
    project_root: Path,
    env: dict[str, str],
    boot_timeout: float,
    *,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[LocalServer]:
    """`start-server` on 127.0.0.1, stopped (SIGTERM) on exit; yields once /health answers 200.

    The log goes to `log_path` and stays there, or to a temporary file removed at the end.
    """
    if log_path is None:
        handle, log_name = tempfile.mkstemp(prefix="agent-server-", suffix=".log")
        os.close(handle)
    server = LocalServer("", log_path or Path(log_name))
    with server.log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent_server.start_server", *SERVER_ARGS],
            cwd=cwd or project_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server.process = process
        try:
            server.boot_seconds = _wait_healthy(server, process, boot_timeout)
            yield server
        finally:
            _stop(process)
            if log_path is None:
                server.log_path.unlink(missing_ok=True)


def _wait_healthy(server: LocalServer, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Until the server's log names its URL and /health there answers 200; sets `server.url`."""
    started = time.monotonic()
    # One client for every poll: each new httpx client loads the CA bundle again (~20 ms CPU).
    with httpx.Client(timeout=2) as http:
        while time.monotonic() - started < timeout:
            if process.poll() is not None:
                raise CliError(
                    f"the agent server exited with code {process.returncode} while starting; "
                    f"its log ends with:\n{server.log_tail()}",
                    hint="fix the error above, then run `uv run preflight` again",
                )
            if not server.url and (listening := LISTENING.search(server.log())):
                server.url = listening.group(1)
            if server.url:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{server.url}/health").status_code == 200:
                        return time.monotonic() - started
            time.sleep(POLL_SECONDS)
    raise CliError(
        f"the agent server did not answer /health within {timeout:g} s; "
        f"its log ends with:\n{server.log_tail()}",
        hint="a slow first start (imports, a cold cache) may need --boot-timeout",
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
