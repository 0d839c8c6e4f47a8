"""Faults downstream of the agent: the LLM endpoint fails, stalls or breaks its stream, the
workspace host stops answering, the client goes away.

Expected, and tested here against the fake's fault injection (tests/fake_workspace/faults.py):
- the LLM client retries, with backoff, only a call that failed before its answer started;
  nothing is retried once tokens have reached the client;
- every outbound call has a timeout: a request fails within a bounded time;
- a plain request is answered 502/503/504 with a JSON reason, a stream ends with one
  well-formed error event and `data: [DONE]`;
- the server keeps serving: /health answers, and the next request succeeds;
- a client that disconnects mid-stream cancels the LLM call (the fake sees it closed early).
"""

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.agent_process import (
    LLM_MAX_RETRIES,
    LLM_TIMEOUT_SECONDS,
    WORKSPACE_WAIT_SECONDS,
    AgentProcess,
    agent_env,
    agent_process,
)
from tests.fake_workspace import FakeWorkspace
from tests.fake_workspace.faults import LlmCall, llm_calls
from tests.support import output_text, read_sse, user_request

# The openai client's backoff before retry n is at most 0.5 * 2**n s (plus jitter, capped).
MAX_BACKOFF_SECONDS = sum(0.5 * 2**n for n in range(LLM_MAX_RETRIES)) * 1.25
SLACK_SECONDS = 10.0  # scheduling on a busy machine; the bounds checked are far larger effects


@pytest.fixture
def server(reliability_server: AgentProcess) -> AgentProcess:
    return reliability_server


@pytest.fixture
def fake(canary_fake: FakeWorkspace) -> Iterator[FakeWorkspace]:
    """The server's fake, without faults before and after each test."""
    canary_fake.configure(faults=[], tokens=None, token_delay=0.0)
    yield canary_fake
    canary_fake.configure(faults=[], tokens=None, token_delay=0.0)


def invoke(server: AgentProcess, text: str = "hello") -> httpx.Response:
    with httpx.Client(timeout=120) as http:
        return http.post(f"{server.url}/invocations", json=user_request(text))


def stream_events(server: AgentProcess, text: str = "hello") -> list[Any]:
    with (
        httpx.Client(timeout=120) as http,
        http.stream(
            "POST", f"{server.url}/invocations", json={**user_request(text), "stream": True}
        ) as response,
    ):
        assert response.status_code == 200
        return read_sse(response)


def calls_of(fake: FakeWorkspace, started_after: float) -> list[LlmCall]:
    return [call for call in llm_calls(fake) if call.started >= started_after]


def assert_error_event(events: list[Any], status: int, code: str) -> dict[str, Any]:
    """The stream ends with exactly one well-formed error event, then [DONE]."""
    assert events[-1] == "[DONE]", events
    errors = [e for e in events[:-1] if e.get("type") == "error" or "error" in e]
    assert errors == [events[-2]], events
    error = events[-2]
    assert error["type"] == "error" and error["status"] == status and error["code"] == code
    assert isinstance(error["message"], str) and error["message"] == error["error"]
    return error


def assert_still_serving(server: AgentProcess, fake: FakeWorkspace) -> None:
    fake.configure(faults=[], tokens=None, token_delay=0.0)
    with httpx.Client(timeout=60) as http:
        assert http.get(f"{server.url}/health").json() == {"status": "healthy"}
    response = invoke(server, "all good?")
    assert response.status_code == 200, response.text
    assert output_text(response.json()["output"]) == "You said: all good?"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_failure_before_the_answer_is_retried(
    server: AgentProcess, fake: FakeWorkspace, status: int
) -> None:
    fake.configure(faults=[{"kind": "status", "status": status, "times": LLM_MAX_RETRIES}])
    started = time.monotonic()
    response = invoke(server)
    assert response.status_code == 200, response.text
    assert output_text(response.json()["output"]) == "You said: hello"
    outcomes = [call.outcome for call in calls_of(fake, started)]
    assert outcomes == ["fault"] * LLM_MAX_RETRIES + ["completed"]


def test_a_stream_is_retried_before_its_first_token(
    server: AgentProcess, fake: FakeWorkspace
) -> None:
    fake.configure(faults=[{"kind": "status", "status": 503, "times": 1}])
    started = time.monotonic()
    events = stream_events(server)
    assert events[-1] == "[DONE]"
    deltas = "".join(e["delta"] for e in events[:-1] if e["type"] == "response.output_text.delta")
    assert deltas == "You said: hello"  # every token once: the failed call sent none
    assert [call.outcome for call in calls_of(fake, started)] == ["fault", "completed"]


def test_429_retry_waits_for_retry_after(server: AgentProcess, fake: FakeWorkspace) -> None:
    fake.configure(faults=[{"kind": "status", "status": 429, "retry_after": 1, "times": 1}])
    started = time.monotonic()
    assert invoke(server).status_code == 200
    first, second = calls_of(fake, started)
    assert first.ended is not None
    assert second.started - first.ended >= 1.0  # the Retry-After: 1 was honoured


@pytest.mark.parametrize(
    ("status", "answer", "code"),
    [
        (500, 502, "upstream_error"),
        (503, 503, "upstream_unavailable"),
        (429, 503, "upstream_unavailable"),
    ],
)
def test_persistent_failures_are_answered_with_a_reason(
    server: AgentProcess, fake: FakeWorkspace, status: int, answer: int, code: str
) -> None:
    fake.configure(faults=[{"kind": "status", "status": status, "times": None}])
    started = time.monotonic()
    response = invoke(server)
    assert response.status_code == answer
    assert response.json()["detail"].startswith(f"The LLM endpoint answered {status}")
    assert len(calls_of(fake, started)) == LLM_MAX_RETRIES + 1  # bounded retries

    started = time.monotonic()
    error = assert_error_event(stream_events(server), answer, code)
    assert error["message"].startswith(f"The LLM endpoint answered {status}")
    assert len(calls_of(fake, started)) == LLM_MAX_RETRIES + 1
    assert_still_serving(server, fake)


def test_an_llm_that_never_answers_times_out_with_504(
    server: AgentProcess, fake: FakeWorkspace
) -> None:
    fake.configure(faults=[{"kind": "slow_first_token", "delay": 60, "times": None}])
    bound = (LLM_MAX_RETRIES + 1) * LLM_TIMEOUT_SECONDS + MAX_BACKOFF_SECONDS + SLACK_SECONDS
    started = time.monotonic()
    response = invoke(server)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "did not answer in time" in response.json()["detail"]
    assert len(calls_of(fake, started)) == LLM_MAX_RETRIES + 1
    assert LLM_TIMEOUT_SECONDS * (LLM_MAX_RETRIES + 1) <= elapsed < bound

    started = time.monotonic()
    assert_error_event(stream_events(server), 504, "upstream_timeout")
    assert time.monotonic() - started < bound
    assert_still_serving(server, fake)


def test_a_slow_first_token_once_is_retried(server: AgentProcess, fake: FakeWorkspace) -> None:
    fake.configure(faults=[{"kind": "slow_first_token", "delay": 30, "times": 1}])
    started = time.monotonic()
    assert invoke(server).status_code == 200
    assert [call.fault for call in calls_of(fake, started)] == ["slow_first_token", None]


def _deltas(events: list[Any]) -> list[str]:
    return [e["delta"] for e in events[:-1] if e.get("type") == "response.output_text.delta"]


def test_a_stream_dropped_mid_answer_is_not_retried(
    server: AgentProcess, fake: FakeWorkspace
) -> None:
    """Tokens had reached the client: a retry would send them again. One LLM call only."""
    fake.configure(tokens=8, faults=[{"kind": "drop", "after": 4}])
    started = time.monotonic()
    events = stream_events(server)
    assert len(_deltas(events)) >= 1  # the client got tokens before the drop
    error = assert_error_event(events, 502, "upstream_error")
    assert "broke off" in error["message"]
    assert [call.outcome for call in calls_of(fake, started)] == ["fault"]

    # A plain request's LLM answer is not streamed: nothing had reached the client when the
    # connection dropped, so the LLM client retries it, safely.
    fake.configure(faults=[{"kind": "drop", "after": 4}])
    started = time.monotonic()
    response = invoke(server)
    assert response.status_code == 200, response.text
    assert [call.outcome for call in calls_of(fake, started)] == ["fault", "completed"]
    assert_still_serving(server, fake)


def test_a_malformed_chunk_is_a_502(server: AgentProcess, fake: FakeWorkspace) -> None:
    fake.configure(tokens=8, faults=[{"kind": "malformed", "after": 3}])
    started = time.monotonic()
    error = assert_error_event(stream_events(server), 502, "upstream_error")
    assert "invalid response" in error["message"]
    assert len(calls_of(fake, started)) == 1

    fake.configure(faults=[{"kind": "malformed", "after": 3}])
    response = invoke(server)
    assert response.status_code == 502
    assert "invalid response" in response.json()["detail"]
    assert_still_serving(server, fake)


def test_a_stream_that_stalls_mid_answer_times_out(
    server: AgentProcess, fake: FakeWorkspace
) -> None:
    fake.configure(tokens=8, faults=[{"kind": "stall", "after": 4, "delay": 60}])
    started = time.monotonic()
    events = stream_events(server)
    assert len(_deltas(events)) >= 1
    assert_error_event(events, 504, "upstream_timeout")
    assert len(calls_of(fake, started)) == 1  # not retried: tokens had reached the client
    assert time.monotonic() - started < LLM_TIMEOUT_SECONDS + SLACK_SECONDS
    assert_still_serving(server, fake)


def test_a_client_disconnect_cancels_the_llm_call(
    server: AgentProcess, fake: FakeWorkspace
) -> None:
    """The client reads two deltas of a 100-token answer and hangs up: the LLM call ends early.

    Async handlers are cancelled at once; a sync handler's generator is closed by its worker
    thread at the next token (agent_server/runtime/handler_adapter.py).
    """
    tokens, token_delay = 100, 0.05
    fake.configure(tokens=tokens, token_delay=token_delay)
    started = time.monotonic()
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST", f"{server.url}/invocations", json={**user_request("long"), "stream": True}
        ) as response,
    ):
        deltas = 0
        for line in response.iter_lines():
            deltas += '"response.output_text.delta"' in line
            if deltas == 2:
                break
    hung_up = time.monotonic()
    deadline = hung_up + tokens * token_delay + SLACK_SECONDS
    while True:
        [call] = calls_of(fake, started)
        if call.outcome != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert call.outcome == "cancelled", call
    assert call.events_sent < tokens
    assert call.ended is not None
    # The LLM call ended well before the answer would have: a fraction of its length.
    assert call.ended - hung_up < tokens * token_delay / 4, call
    assert_still_serving(server, fake)


class Blackhole:
    """A host that accepts connections and never answers; `close()` makes it refuse them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.held.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


def _failures(agent: AgentProcess, count: int) -> tuple[list[tuple[int, str, float]], float]:
    """`count` requests at once, and /health polled meanwhile: the answers with their times,
    and the slowest /health answer."""
    answers: list[tuple[int, str, float]] = []

    def one_request() -> None:
        began = time.monotonic()
        response = invoke(agent)
        answers.append((response.status_code, response.text, time.monotonic() - began))

    threads = [threading.Thread(target=one_request) for _ in range(count)]
    for thread in threads:
        thread.start()
    health = []
    with httpx.Client(timeout=30) as http:
        while any(thread.is_alive() for thread in threads):
            began = time.monotonic()
            assert http.get(f"{agent.url}/health").status_code == 200
            health.append(time.monotonic() - began)
            time.sleep(0.2)
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == count and health
    return answers, max(health)


def test_health_answers_while_the_workspace_host_is_down(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The reference app froze, /health included, for ~300 s. Here /health stays fast and the
    requests that need the workspace fail within a bounded time, with a reason, while the host
    (1) hangs before the client is built, (2) hangs once it is built, (3) refuses connections."""
    blackhole = Blackhole()
    # Longer than phase (1) takes (its requests and stream, each waiting WORKSPACE_WAIT_SECONDS),
    # so the client cannot be built in the middle of it, even on a loaded machine.
    sdk_http_timeout = 8
    env = agent_env(
        FakeWorkspace(),  # not started: only its credentials are used, the host is the blackhole
        DATABRICKS_HOST=blackhole.url,
        AGENT_WORKSPACE_WAIT_SECONDS=str(WORKSPACE_WAIT_SECONDS),
        AGENT_LLM_TIMEOUT_SECONDS=str(LLM_TIMEOUT_SECONDS),
        DATABRICKS_RETRY_TIMEOUT_SECONDS="1",
        DATABRICKS_HTTP_TIMEOUT_SECONDS=str(sdk_http_timeout),
    )
    llm_bound = (LLM_MAX_RETRIES + 1) * LLM_TIMEOUT_SECONDS + MAX_BACKOFF_SECONDS
    try:
        with agent_process(env, tmp_path_factory.mktemp("workspace-down") / "server.log") as agent:
            # (1) Building the client waits for the host: requests give up after the wait.
            answers, slowest_health = _failures(agent, 4)
            for status, text, elapsed in answers:
                assert status == 503 and "did not answer within" in text, text
                assert WORKSPACE_WAIT_SECONDS <= elapsed < WORKSPACE_WAIT_SECONDS + SLACK_SECONDS
            assert slowest_health < min(elapsed for *_, elapsed in answers) / 4
            events = stream_events(agent)
            assert events[-1] == "[DONE]" and events[-2]["status"] == 503

            # (2) The SDK gives up on the host after its HTTP timeout and builds the client;
            # LLM calls then time out, each retried, and the request fails with 504.
            time.sleep(sdk_http_timeout)
            answers, slowest_health = _failures(agent, 4)
            for status, text, elapsed in answers:
                assert status == 504, text
                assert elapsed < llm_bound + SLACK_SECONDS
            assert slowest_health < min(elapsed for *_, elapsed in answers) / 4

            # (3) The host refuses connections: 502 after the retries.
            blackhole.close()
            answers, _ = _failures(agent, 2)
            for status, text, elapsed in answers:
                assert status == 502 and "Could not reach the LLM endpoint" in text, text
                assert elapsed < llm_bound + SLACK_SECONDS
            assert agent.process.poll() is None
    finally:
        blackhole.close()
