"""The agent end to end: real server, real clients, fake workspace."""

import contextlib
import json
import sqlite3
import statistics
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
from mlflow import MlflowClient

from tests.agent_process import GIT_COMMIT, SERVING_ENDPOINT
from tests.fake_workspace import FakeWorkspace
from tests.support import output_text, read_sse, stream, user_request, wait_for_trace

TOOL_PROMPT = 'What time is it in Paris? Use get_current_time {"timezone": "Europe/Paris"}'


def test_invoke_answers_from_the_llm(
    client: httpx.Client, agent_url: str, fake_workspace: FakeWorkspace
) -> None:
    response = client.post(f"{agent_url}/invocations", json=user_request("Hello there"))
    assert response.status_code == 200, response.text
    assert output_text(response.json()["output"]) == "You said: Hello there"
    llm_calls = [r for r in fake_workspace.requests if r.path.endswith("/chat/completions")]
    assert llm_calls and llm_calls[0].body["model"] == SERVING_ENDPOINT


def test_stream_sends_deltas_then_the_item(client: httpx.Client, agent_url: str) -> None:
    events = stream(client, f"{agent_url}/invocations", user_request("Stream this please"))
    assert events[-1] == "[DONE]"
    deltas = [e["delta"] for e in events[:-1] if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "You said: Stream this please"
    assert len(deltas) > 1
    done = [e["item"] for e in events[:-1] if e["type"] == "response.output_item.done"]
    assert output_text(done) == "You said: Stream this please"
    delta_ids = {e["item_id"] for e in events[:-1] if e["type"] == "response.output_text.delta"}
    assert delta_ids == {done[-1]["id"]}


def test_responses_route_matches_invocations(client: httpx.Client, agent_url: str) -> None:
    body = user_request("Same answer?")
    via_responses = client.post(f"{agent_url}/responses", json=body).json()
    via_invocations = client.post(f"{agent_url}/invocations", json=body).json()
    assert output_text(via_responses["output"]) == output_text(via_invocations["output"])


def test_chat_style_messages_body_is_accepted(client: httpx.Client, agent_url: str) -> None:
    body = {"messages": [{"role": "user", "content": "Old style"}]}
    response = client.post(f"{agent_url}/invocations", json=body)
    assert response.status_code == 200, response.text
    assert output_text(response.json()["output"]) == "You said: Old style"
    events = stream(client, f"{agent_url}/invocations", body)
    assert output_text([e["item"] for e in events[:-1] if "item" in e]) == "You said: Old style"


def test_custom_inputs_come_back_as_custom_outputs(client: httpx.Client, agent_url: str) -> None:
    body = user_request("hi", custom_inputs={"session": "abc"})
    response = client.post(f"{agent_url}/invocations", json=body)
    outputs = response.json()["custom_outputs"]
    # An agent with memory adds the conversation's ids (agent_server/runtime/conversation.py).
    memory_ids = {"thread_id", "user_id"}
    assert {k: v for k, v in outputs.items() if k not in memory_ids} == {"session": "abc"}


def _check_tool_round_trip(output: list[dict]) -> None:
    call = next(item for item in output if item["type"] == "function_call")
    assert call["name"] == "get_current_time"
    assert json.loads(call["arguments"]) == {"timezone": "Europe/Paris"}
    result = next(item for item in output if item["type"] == "function_call_output")
    assert result["call_id"] == call["call_id"]
    now_in_paris = datetime.fromisoformat(result["output"])
    assert now_in_paris.utcoffset() is not None
    assert abs(now_in_paris.timestamp() - time.time()) < 300
    assert output_text(output) == f"The tool said: {result['output']}"


def test_tool_round_trip(client: httpx.Client, agent_url: str) -> None:
    response = client.post(f"{agent_url}/invocations", json=user_request(TOOL_PROMPT))
    assert response.status_code == 200, response.text
    _check_tool_round_trip(response.json()["output"])


def test_tool_round_trip_streaming(client: httpx.Client, agent_url: str) -> None:
    events = stream(client, f"{agent_url}/invocations", user_request(TOOL_PROMPT))
    _check_tool_round_trip([e["item"] for e in events[:-1] if "item" in e])


def test_llm_errors_are_reported_and_the_server_keeps_serving(
    client: httpx.Client, agent_url: str, fake_workspace: FakeWorkspace
) -> None:
    fake_workspace.configure(endpoints={"some-other-endpoint"})  # the LLM answers 404
    response = client.post(f"{agent_url}/invocations", json=user_request("hello"))
    assert response.status_code == 502
    assert response.json()["detail"].startswith("The LLM endpoint answered 404")
    events = stream(client, f"{agent_url}/invocations", user_request("hello"))
    assert events[-1] == "[DONE]"
    assert events[-2]["error"].startswith("The LLM endpoint answered 404")
    fake_workspace.configure(endpoints=None)
    response = client.post(f"{agent_url}/invocations", json=user_request("hello again"))
    assert response.status_code == 200


def test_requests_are_traced_to_the_local_store(
    client: httpx.Client, agent_url: str, tracking_db: Path
) -> None:
    response = client.post(
        f"{agent_url}/invocations",
        json=user_request("Trace me"),
        headers={"x-mlflow-return-trace-id": "true"},
    )
    trace = wait_for_trace(tracking_db, response.json()["metadata"]["trace_id"])
    assert trace.info.state == "OK"
    assert "Trace me" in json.dumps(trace.data.spans[0].inputs)
    model_id = trace.info.trace_metadata.get("mlflow.modelId")
    assert model_id is not None
    assert MlflowClient().get_logged_model(model_id).name == f"local-git-{GIT_COMMIT[:8]}"
    # tracing.tune_local_store() put the local store in write-ahead-log mode.
    with contextlib.closing(sqlite3.connect(tracking_db)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_llm_and_tool_call_is_a_span_of_the_request(
    client: httpx.Client, agent_url: str, tracking_db: Path
) -> None:
    response = client.post(
        f"{agent_url}/invocations",
        json=user_request(TOOL_PROMPT),
        headers={"x-mlflow-return-trace-id": "true"},
    )
    assert response.status_code == 200, response.text
    trace = wait_for_trace(tracking_db, response.json()["metadata"]["trace_id"])
    root = next(span for span in trace.data.spans if span.parent_id is None)
    steps = sorted(
        (span for span in trace.data.spans if span.parent_id == root.span_id),
        key=lambda span: span.start_time_ns,
    )
    # Two LLM calls (the tool call, then the answer) around one tool call, in order.
    assert [(span.name, span.span_type) for span in steps] == [
        ("llm", "CHAT_MODEL"),
        ("get_current_time", "TOOL"),
        ("llm", "CHAT_MODEL"),
    ]
    assert "Europe/Paris" in json.dumps(steps[1].inputs)
    assert steps[1].outputs is not None


def test_slow_streams_neither_block_health_nor_each_other(
    agent_url: str, fake_workspace: FakeWorkspace
) -> None:
    """Six 1.5 s streams at once: they overlap, and /health answers quickly meanwhile.

    With sync handlers run inline on the event loop (mlflow's default) the streams would run
    one after another, and /health would wait for the current one to finish.
    """
    fake_workspace.configure(tokens=30, token_delay=0.05)
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def one_stream() -> None:
        try:
            with (
                httpx.Client(timeout=60) as http,
                http.stream(
                    "POST", f"{agent_url}/invocations", json={**user_request("go"), "stream": True}
                ) as response,
            ):
                started = time.monotonic()
                events = read_sse(response)
                spans.append((started, time.monotonic()))
                assert events[-1] == "[DONE]"
                assert sum(1 for e in events if "delta" in e) == 30
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_stream) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    health_latencies = []
    with httpx.Client(timeout=60) as http:
        for _ in range(5):
            started = time.monotonic()
            assert http.get(f"{agent_url}/health").status_code == 200
            health_latencies.append(time.monotonic() - started)
            time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(spans) == 6
    # Overlap: every stream started before any stream finished.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    stream_seconds = statistics.median(end - start for start, end in spans)
    assert max(health_latencies) < stream_seconds / 5
