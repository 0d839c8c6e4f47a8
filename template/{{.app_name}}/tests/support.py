"""Helpers for the tests: run the agent server as a real process, read its SSE streams and
its traces."""

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
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Trace

from tests.fake_workspace import DEFAULT_TOKEN

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A bound for loaded CI machines, not a speed check: an idle machine boots in seconds.
BOOT_TIMEOUT_SECONDS = 300
FAKE_MODEL = "databricks-fake-model"
CHAT_PATH = "/serving-endpoints/chat/completions"


def server_env(extra: dict[str, str], remove: tuple[str, ...] = ()) -> dict[str, str]:
    """The test process's environment without Databricks or MLflow settings, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in remove and not key.startswith(("DATABRICKS_", "MLFLOW_"))
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A URL of 127.0.0.1 that refuses connections while the block runs: its port is bound here
    and never listened on, so no other process can start listening there meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


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


def wait_for_trace(tracking_db: Path, trace_id: str, timeout: float = 30) -> Trace:
    """The trace `trace_id` from the local store, once mlflow has exported all of it.

    Export is asynchronous and in two parts: spans are written in batches as they end, then the
    trace's info and metadata (size stats first among them). Until the second part lands the
    store holds a trace without its metadata.
    """
    mlflow.set_tracking_uri(f"sqlite:///{tracking_db}")
    tracking = MlflowClient()
    deadline = time.monotonic() + timeout
    while True:
        try:
            trace = tracking.get_trace(trace_id)
            if "mlflow.trace.sizeStats" in trace.info.trace_metadata:
                return trace
        except Exception:  # not exported yet
            pass
        assert time.monotonic() < deadline, f"trace {trace_id} never fully reached {tracking_db}"
        time.sleep(0.25)


def start_server_calls(script: str, calls: int) -> list[Any]:
    """The last `calls` lines `script` prints, each a JSON value, run in this project with no
    Databricks, MLflow or AGENT_ settings (the tests replace uvicorn.run in it with a print, then
    call start_server.main)."""
    prefixes = ("DATABRICKS_", "MLFLOW_", "AGENT_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env={**base, "AGENT_ENV_FILE": os.devnull, "SERVING_ENDPOINT": "x"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.strip().splitlines()[-calls:]]
