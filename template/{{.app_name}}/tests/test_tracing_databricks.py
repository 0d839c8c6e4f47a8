"""Traces on the Databricks path: the server as an App runs it, tracing to a workspace.

On Databricks Apps the server gets MLFLOW_TRACKING_URI=databricks and the experiment of the
bundle (MLFLOW_EXPERIMENT_ID); mlflow then exports each trace to the workspace over REST. Here
the workspace is the fake (tests/fake_workspace/traces_api.py, which follows mlflow's calls), so
each test reads back what a workspace would have stored. The server is the session's deployed
app (tests/agent_process.py); the SIGTERM test stops it, so it comes last.
"""

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from mlflow.entities import Span, TraceData

from tests.agent_process import (
    DEPLOYED_APP_NAME,
    GIT_COMMIT,
    AgentProcess,
    DeployedApp,
)
from tests.fake_workspace import FakeWorkspace
from tests.fake_workspace.faults import llm_calls, wait_for_llm_calls
from tests.fake_workspace.traces_api import (
    StoredTrace,
    logged_models,
    stored_trace,
    stored_traces,
    unknown_tracking_calls,
)
from tests.support import output_text, read_sse, stream, user_request

TOOL_PROMPT = 'What time is it in Paris? Use get_current_time {"timezone": "Europe/Paris"}'
TRACE_WAIT_SECONDS = 30
# A request answered by the fake LLM takes well under a second. While the tracking store fails
# or is slow (each call STORE_DELAY_SECONDS), no request may take longer than this: none waits
# for the store.
REQUEST_BOUND_SECONDS = 5.0
STORE_DELAY_SECONDS = 6.0
EXPORT_WARNING = "Traces are not reaching the tracking store"


@pytest.fixture
def workspace(deployed_app: DeployedApp) -> FakeWorkspace:
    return deployed_app.workspace


@pytest.fixture
def app_server(deployed_app: DeployedApp) -> AgentProcess:
    return deployed_app.server


# What the Databricks Apps proxy adds to a signed-in user's request (the token with user
# authorization): the requests here come as they do on Apps.
PROXY_HEADERS = {
    "X-Forwarded-Email": "ada@example.com",
    "X-Forwarded-User": "4242",
    "X-Forwarded-Access-Token": "user-token-of-ada",
}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120, headers=PROXY_HEADERS) as client:
        yield client


@pytest.fixture(autouse=True)
def _healthy_store(workspace: FakeWorkspace) -> Iterator[None]:
    workspace.configure(tracking_status=None, tracking_delay=0.0, tokens=None, token_delay=0.0)
    yield
    workspace.configure(tracking_status=None, tracking_delay=0.0, tokens=None, token_delay=0.0)


def wait_for_stored_trace(workspace: FakeWorkspace, trace_id: str) -> StoredTrace:
    """The trace once both its info and its spans (traces.json) reached the workspace."""
    deadline = time.monotonic() + TRACE_WAIT_SECONDS
    while (trace := stored_trace(workspace, trace_id)) is None or trace.data is None:
        assert time.monotonic() < deadline, f"trace {trace_id} never fully reached the workspace"
        time.sleep(0.1)
    return trace


def wait_for_new_traces(workspace: FakeWorkspace, known: set[str], count: int) -> list[StoredTrace]:
    deadline = time.monotonic() + TRACE_WAIT_SECONDS
    while True:
        new = [t for t in stored_traces(workspace) if t.trace_id not in known]
        if len(new) >= count and all(t.data is not None for t in new):
            return new
        assert time.monotonic() < deadline, f"{len(new)} of {count} traces reached the workspace"
        time.sleep(0.1)


def spans_of(trace: StoredTrace) -> list[Span]:
    """The spans as mlflow reads them back from traces.json."""
    assert trace.data is not None
    return TraceData.from_dict(trace.data).spans


def test_a_request_lands_one_complete_trace(
    app_server: AgentProcess, workspace: FakeWorkspace, http: httpx.Client
) -> None:
    known = {t.trace_id for t in stored_traces(workspace)}
    response = http.post(
        f"{app_server.url}/invocations",
        json=user_request(TOOL_PROMPT),
        headers={"x-mlflow-return-trace-id": "true"},
    )
    assert response.status_code == 200, response.text
    answer = output_text(response.json()["output"])
    trace_id = response.json()["metadata"]["trace_id"]
    trace = wait_for_stored_trace(workspace, trace_id)
    time.sleep(1)  # a second trace of the same request would have been exported by now
    assert [t.trace_id for t in stored_traces(workspace) if t.trace_id not in known] == [trace_id]
    exports = [
        r
        for r in workspace.requests
        if r.path == "/api/3.0/mlflow/traces" and trace_id in json.dumps(r.body)
    ]
    assert len(exports) == 1  # exported once, not retried into a duplicate

    assert trace.info["state"] == "OK"
    assert "Europe/Paris" in trace.info["request_preview"]
    assert "The tool said" in trace.info["response_preview"]
    spans = spans_of(trace)
    root = next(span for span in spans if span.parent_id is None)
    assert "Europe/Paris" in json.dumps(root.inputs)
    assert answer in json.dumps(root.outputs)
    steps = sorted(
        (span for span in spans if span.parent_id == root.span_id), key=lambda s: s.start_time_ns
    )
    assert [(span.name, span.span_type) for span in steps] == [
        ("llm", "CHAT_MODEL"),
        ("get_current_time", "TOOL"),
        ("llm", "CHAT_MODEL"),
    ]
    assert "Europe/Paris" in json.dumps(steps[1].inputs)
    assert steps[1].outputs is not None

    # The app's version: the LoggedModel named after the app and its commit.
    model_id = trace.info["trace_metadata"]["mlflow.modelId"]
    models = {m["model_id"]: m for m in logged_models(workspace)}
    assert models[model_id]["name"] == f"{DEPLOYED_APP_NAME}-git-{GIT_COMMIT[:8]}"
    assert models[model_id]["status"] == "LOGGED_MODEL_READY"
    assert unknown_tracking_calls(workspace) == []


def test_a_streamed_request_lands_one_complete_trace(
    app_server: AgentProcess, workspace: FakeWorkspace, http: httpx.Client
) -> None:
    known = {t.trace_id for t in stored_traces(workspace)}
    events = stream(http, f"{app_server.url}/invocations", user_request("Stream and trace me"))
    answer = output_text([e["item"] for e in events[:-1] if "item" in e])
    assert answer == "You said: Stream and trace me"
    [trace] = wait_for_new_traces(workspace, known, 1)
    time.sleep(1)
    assert len([t for t in stored_traces(workspace) if t.trace_id not in known]) == 1
    assert trace.info["state"] == "OK"
    spans = spans_of(trace)
    root = next(span for span in spans if span.parent_id is None)
    assert "Stream and trace me" in json.dumps(root.inputs)
    assert [s.span_type for s in spans if s.parent_id == root.span_id] == ["CHAT_MODEL"]
    assert unknown_tracking_calls(workspace) == []


def _ask(url: str, index: int, timeout: float = 120) -> tuple[int, float]:
    """One request (streamed when `index` is even): (status, seconds); status 0 if it broke or
    took longer than `timeout` s."""
    started = time.monotonic()
    body = user_request(f"question {index}", stream=index % 2 == 0)
    try:
        with (
            httpx.Client(timeout=timeout, headers=PROXY_HEADERS) as client,
            client.stream("POST", f"{url}/invocations", json=body) as response,
        ):
            if index % 2 == 0:
                events = read_sse(response)
                ok = events[-1] == "[DONE]" and not [
                    e for e in events[:-1] if e.get("type") == "error"
                ]
            else:
                ok = output_text(json.loads(response.read())["output"]).startswith("You said")
            status = response.status_code if ok else 0
    except httpx.HTTPError:
        status = 0
    return status, time.monotonic() - started


def _timed_requests(url: str, count: int) -> list[tuple[int, float]]:
    return [_ask(url, index, timeout=2 * REQUEST_BOUND_SECONDS) for index in range(count)]


def _start_trace_attempts(workspace: FakeWorkspace) -> int:
    return sum(1 for r in workspace.requests if r.path == "/api/3.0/mlflow/traces")


def test_requests_do_not_wait_for_a_failing_tracking_store(
    app_server: AgentProcess, workspace: FakeWorkspace
) -> None:
    log_before = app_server.log()
    attempts_before = _start_trace_attempts(workspace)
    workspace.configure(tracking_status=503)
    results = _timed_requests(app_server.url, 6)
    assert [status for status, _ in results] == [200] * 6, results
    assert max(seconds for _, seconds in results) < REQUEST_BOUND_SECONDS, results

    # Every export gives up (agent_process.EXPORT_SETTINGS); then the server has said so once.
    deadline = time.monotonic() + 30
    while _start_trace_attempts(workspace) - attempts_before < 6:
        assert time.monotonic() < deadline, "the traces were never sent to the store"
        time.sleep(0.2)
    time.sleep(4)  # the last export's retries (3 s, EXPORT_SETTINGS) run out
    new_log = app_server.log()[len(log_before) :]
    warnings = [line for line in new_log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert len(warnings) == 1, warnings
    assert EXPORT_WARNING in warnings[0]

    # Once the store answers again, traces land again.
    workspace.configure(tracking_status=None)
    known = {t.trace_id for t in stored_traces(workspace)}
    assert _timed_requests(app_server.url, 1)[0][0] == 200
    wait_for_new_traces(workspace, known, 1)


def test_requests_do_not_wait_for_a_slow_tracking_store(
    app_server: AgentProcess, workspace: FakeWorkspace
) -> None:
    """A store that takes longer to answer than any request may: traces land late, that is all.

    (A store that never answers fails each export after databricks-sdk's HTTP timeout, 60 s,
    and is then reported like the failing store above.)
    """
    log_before = app_server.log()
    known = {t.trace_id for t in stored_traces(workspace)}
    workspace.configure(tracking_delay=STORE_DELAY_SECONDS)
    results = _timed_requests(app_server.url, 4)
    assert [status for status, _ in results] == [200] * 4, results
    assert max(seconds for _, seconds in results) < REQUEST_BOUND_SECONDS, results
    workspace.configure(tracking_delay=0.0)  # calls already waiting still take their time
    wait_for_new_traces(workspace, known, 4)
    new_log = app_server.log()[len(log_before) :]
    assert [line for line in new_log.splitlines() if "WARNING" in line] == []


IN_FLIGHT = 8  # requests running when SIGTERM arrives, half of them streams


@pytest.mark.stops_session_server
def test_sigterm_under_load_loses_no_trace(deployed_app: DeployedApp) -> None:
    """It stops the deployed app's server, as Databricks Apps stops an app."""
    app_server, workspace = deployed_app.server, deployed_app.workspace
    workspace.configure(tokens=10, token_delay=0.1)  # each answer takes about 1 s
    known = {t.trace_id for t in stored_traces(workspace)}
    calls_before = len(llm_calls(workspace))
    results: list[tuple[int, float]] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(_ask(app_server.url, i)))
        for i in range(IN_FLIGHT)
    ]
    for thread in threads:
        thread.start()
    wait_for_llm_calls(workspace, calls_before + IN_FLIGHT, timeout=30)
    app_server.process.send_signal(15)  # SIGTERM
    for thread in threads:
        thread.join(timeout=60)
    app_server.terminate()  # already exiting: waits for the exit
    log = app_server.log()
    assert [status for status, _ in results] == [200] * IN_FLIGHT, log[-3000:]
    assert "Queued traces exported." in log, log[-3000:]
    traces = wait_for_new_traces(workspace, known, IN_FLIGHT)
    assert len(traces) == IN_FLIGHT
    assert all(t.info["state"] == "OK" for t in traces)
    assert unknown_tracking_calls(workspace) == []
