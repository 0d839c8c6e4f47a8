"""Helpers for the tests: run the agent server as a real process, and read its SSE streams."""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from agent_cli.local_server import running
from tests.fake_workspace import DEFAULT_TOKEN

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A bound for loaded CI machines, not a speed check: an idle machine boots in seconds.
BOOT_TIMEOUT_SECONDS = 300
FAKE_MODEL = "databricks-fake-model"
CHAT_PATH = "/serving-endpoints/chat/completions"


@contextlib.contextmanager
def running_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Start `start-server` on a free port with `env`; yield its URL once /health answers."""
    with running(PROJECT_ROOT, env, BOOT_TIMEOUT_SECONDS, log_path=log_path) as server:
        yield server.url


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
