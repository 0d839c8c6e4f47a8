"""Helpers for the tests: run the agent server as a real process, and read its SSE streams."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.fake_workspace import DEFAULT_TOKEN

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BOOT_TIMEOUT_SECONDS = 90
FAKE_MODEL = "databricks-fake-model"
CHAT_PATH = "/serving-endpoints/chat/completions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Start `start-server` on a free port with `env`; yield its URL once /health answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent_server.start_server", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(url, process, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(
        f"server not healthy after {BOOT_TIMEOUT_SECONDS} s:\n{log_path.read_text()}"
    )


def server_env(extra: dict[str, str], remove: tuple[str, ...] = ()) -> dict[str, str]:
    """The test process's environment without Databricks or MLflow settings, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in remove and not key.startswith(("DATABRICKS_", "MLFLOW_"))
    }
    env.update(extra)
    return env


def auth_headers(token: str = DEFAULT_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_message(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def user_request(text: str, **fields: Any) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": text}], **fields}


def read_sse(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of an SSE response: parsed JSON, or the raw text ("[DONE]")."""
    events: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def stream(client: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", url, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return read_sse(response)


def output_text(output: list[dict[str, Any]]) -> str:
    """The text of the assistant messages among Responses output items."""
    return "".join(
        part["text"]
        for item in output
        if item.get("type") == "message"
        for part in item["content"]
        if part.get("type") == "output_text"
    )
