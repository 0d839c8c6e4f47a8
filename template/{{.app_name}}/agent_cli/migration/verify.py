"""Step 5: the model's input example through the original model and the migrated server.

The original is loaded with mlflow.pyfunc.load_model, as Model Serving loads it, and asked for
predict() and then predict_stream() (for an agent with only predict(), predict() again); the
migrated server, booted locally with `start-server`, gets the same two requests in the same
order, non-streaming then streaming, so even a stateful agent is compared state for state. With a
deterministic LLM the output items must be the same; item ids, which agents usually draw at
random, are left out of the comparison.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_cli.local_server import running

BOOT_TIMEOUT_SECONDS = 120
REQUEST_TIMEOUT_SECONDS = 300
# Fields of output items that differ from run to run whatever the LLM does.
VOLATILE_FIELDS = frozenset({"id"})


@dataclass
class Verification:
    status: str  # "passed", "failed", "skipped"
    details: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def normalized(items: list[Any]) -> list[Any]:
    """Output items without their volatile fields, for comparison."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return [clean(item) for item in items]


def done_items(events: list[Any]) -> list[Any]:
    return [
        event["item"]
        for event in events
        if isinstance(event, dict) and event.get("type") == "response.output_item.done"
    ]


def original_outputs(
    model_dir: Path, example: dict[str, Any], pickled: bool
) -> tuple[dict[str, Any], list[Any]]:
    """The original model's predict() answer, then its streamed output items."""
    import mlflow
    from mlflow.pyfunc import ResponsesAgent

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.tracing.disable()  # else MLflow creates mlflow.db in the working directory
    if pickled:
        os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    model = mlflow.pyfunc.load_model(str(model_dir))
    answer = model.predict(example)
    agent = model.get_raw_model()
    if type(agent).predict_stream is ResponsesAgent.predict_stream:
        streamed = list(model.predict(example).get("output") or [])
    else:
        streamed = done_items(list(model.predict_stream(example)))
    return answer, streamed


@contextlib.contextmanager
def migrated_server(project_root: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The migrated app's `start-server` on a free local port; yields its URL once healthy."""
    with running(project_root, env or dict(os.environ), BOOT_TIMEOUT_SECONDS) as server:
        yield server.url


def post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def server_outputs(url: str, example: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    status, body = post(f"{url}/invocations", {**example, "stream": False})
    if status != 200:
        raise RuntimeError(f"/invocations answered {status}: {body.decode(errors='replace')}")
    answer = json.loads(body)
    status, body = post(f"{url}/invocations", {**example, "stream": True})
    if status != 200:
        raise RuntimeError(f"streaming /invocations answered {status}")
    events = []
    for line in body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    errors = [e["error"] for e in events if isinstance(e, dict) and "error" in e]
    if errors:
        raise RuntimeError(f"the stream ended with an error: {errors[-1]}")
    return answer, done_items(events)


def verify(
    project_root: Path, original_dir: Path, example: dict[str, Any] | None, pickled: bool
) -> Verification:
    if example is None:
        return Verification("skipped", ["the model has no input example"])
    try:
        expected, expected_stream = original_outputs(original_dir, example, pickled)
    except Exception as exc:  # the original's own failure says the environment is not ready
        return Verification(
            "failed", [f"the original model failed on its input example: {exc!r}"[:2000]]
        )
    try:
        with migrated_server(project_root) as url:
            answer, streamed = server_outputs(url, example)
    except Exception as exc:
        return Verification("failed", [f"the migrated server: {exc}"[:4000]])

    return compare(expected, expected_stream, answer, streamed)


def compare(
    expected: dict[str, Any],
    expected_stream: list[Any],
    answer: dict[str, Any],
    streamed: list[Any],
) -> Verification:
    """The migrated app's answers against the original's."""
    details = []
    ok = True
    for label, ours, theirs in (
        ("non-streaming output", answer.get("output") or [], expected.get("output") or []),
        ("streamed output items", streamed, expected_stream),
    ):
        if normalized(ours) == normalized(theirs):
            details.append(f"{label}: the same {len(ours)} item(s) as the original")
        else:
            ok = False
            details.append(
                f"{label} differ: migrated {json.dumps(normalized(ours))[:800]} "
                f"!= original {json.dumps(normalized(theirs))[:800]}"
            )
    if answer.get("custom_outputs") != expected.get("custom_outputs"):
        ok = False
        details.append(
            f"custom_outputs differ: migrated {answer.get('custom_outputs')!r} != original "
            f"{expected.get('custom_outputs')!r}"
        )
    else:
        details.append("custom_outputs: the same as the original")
    return Verification("passed" if ok else "failed", details)
