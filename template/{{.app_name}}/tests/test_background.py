"""Background mode (agent_server/runtime/background.py): runs that outlive their requests.

The server runs as deployed (DATABRICKS_APP_NAME set, the proxy's headers name the user), so that
a run belongs to a user; the fake LLM is slowed down so that a run outlasts a client's patience.
"""

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent_server.runtime import background
from tests.agent_process import NOT_MIGRATED, AgentProcess, agent_env, agent_process
from tests.fake_workspace import FakeWorkspace
from tests.support import output_text, read_sse, user_request

ADA_TOKEN = "user-token-of-ada"
ADA = {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-Access-Token": ADA_TOKEN}
BOB = {"X-Forwarded-Email": "bob@example.com", "X-Forwarded-Access-Token": "user-token-of-bob"}
PATIENCE_SECONDS = 0.5  # the clients' read timeout, shorter than every slowed-down run
SLOW = {"tokens": 12, "token_delay": 0.15}  # ~2 s of answer from the fake LLM
RUN_DEADLINE_SECONDS = 120  # a bound for loaded machines, not a speed check


@pytest.fixture(scope="module")
def slow_fake() -> Iterator[FakeWorkspace]:
    with FakeWorkspace() as fake:
        fake.configure(user_tokens=(ADA_TOKEN, BOB["X-Forwarded-Access-Token"]), **SLOW)
        yield fake


@pytest.fixture(scope="module")
def server(
    slow_fake: FakeWorkspace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    env = agent_env(slow_fake, DATABRICKS_APP_NAME="background-app")
    log = tmp_path_factory.mktemp("background") / "server.log"
    with agent_process(env, log) as process:
        yield process


def start(server: AgentProcess, headers: dict[str, str] = ADA) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/responses",
        json=user_request("hello", background=True),
        headers=headers,
        timeout=PATIENCE_SECONDS * 10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_until_ended(server: AgentProcess, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        state = httpx.get(f"{server.url}/responses/{run_id}", headers=ADA, timeout=30).json()
        if state["status"] in ("completed", "failed"):
            return state
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end within {RUN_DEADLINE_SECONDS} s")


def answered(state: dict[str, Any]) -> bool:
    """The run ended as the agent answers: completed with text, or the migration scaffold's
    "not migrated yet" (the same tests run for every agent_framework)."""
    if state["status"] == "completed":
        return bool(output_text(state["output"]))
    return state["status"] == "failed" and NOT_MIGRATED in state["error"]["message"]


def test_a_run_longer_than_the_clients_patience_completes_and_is_readable(
    server: AgentProcess,
) -> None:
    started = start(server)
    assert started["object"] == "response"
    assert started["status"] == "queued"
    assert started["id"].startswith("resp_")
    state = wait_until_ended(server, started["id"])
    assert answered(state), state
    assert state["id"] == started["id"]


def test_a_cut_stream_resumes_where_it_stopped_without_loss_or_repeat(
    server: AgentProcess,
) -> None:
    first: list[dict[str, Any]] = []
    body = user_request("hello", background=True, stream=True)
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{server.url}/responses", json=body, headers=ADA) as answer:
            assert answer.status_code == 200
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    first.append(httpx.Response(200, content=line[6:]).json())
                if len(first) == 2:
                    break  # the client goes away mid-stream
        assert first[0]["type"] == "response.created"
        run_id = first[0]["response"]["id"]
        last = first[-1]["sequence_number"]
        url = f"{server.url}/responses/{run_id}?stream=true&starting_after={last}"
        with http.stream("GET", url, headers=ADA) as resumed:
            assert resumed.status_code == 200
            rest = read_sse(resumed)
        with http.stream(
            "GET", f"{server.url}/responses/{run_id}?stream=true", headers=ADA
        ) as whole:
            everything = read_sse(whole)
    assert rest[-1] == "[DONE]"
    events = first + rest[:-1]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events == everything[:-1]
    assert events[-1]["type"] in ("response.completed", "response.failed")
    assert answered(events[-1]["response"])


def test_the_run_goes_on_when_its_client_times_out(
    server: AgentProcess, slow_fake: FakeWorkspace
) -> None:
    # Tokens further apart than the client waits for the next byte: its read times out.
    slow_fake.configure(tokens=4, token_delay=PATIENCE_SECONDS * 3)
    body = user_request("hello", background=True, stream=True)
    events: list[dict[str, Any]] = []
    try:
        with httpx.Client(timeout=PATIENCE_SECONDS) as http:
            with http.stream("POST", f"{server.url}/responses", json=body, headers=ADA) as answer:
                with pytest.raises(httpx.ReadTimeout):
                    for line in answer.iter_lines():
                        if line.startswith("data: "):
                            events.append(httpx.Response(200, content=line[6:]).json())
    finally:
        slow_fake.configure(**SLOW)
    state = wait_until_ended(server, events[0]["response"]["id"])
    assert answered(state), state


def test_an_unknown_id_is_404(server: AgentProcess) -> None:
    response = httpx.get(f"{server.url}/responses/resp_nope", headers=ADA, timeout=30)
    assert response.status_code == 404
    assert "resp_nope" in response.json()["detail"]


def test_another_users_run_is_404(server: AgentProcess) -> None:
    run_id = start(server, ADA)["id"]
    for query in ("", "?stream=true"):
        response = httpx.get(f"{server.url}/responses/{run_id}{query}", headers=BOB, timeout=30)
        assert response.status_code == 404, response.text
    assert httpx.get(f"{server.url}/responses/{run_id}", headers=ADA, timeout=30).status_code == 200
    wait_until_ended(server, run_id)


def test_a_run_cancelled_by_its_user_stops(server: AgentProcess) -> None:
    run_id = start(server)["id"]
    cancel_url = f"{server.url}/responses/{run_id}/cancel"
    assert httpx.post(cancel_url, headers=BOB, timeout=30).status_code == 404
    cancelled = httpx.post(cancel_url, headers=ADA, timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    ended = cancelled.json()
    # The migration scaffold's run fails at once ("not migrated yet"), before it can be cancelled.
    assert ended["status"] == "cancelled" or (ended["status"] == "failed" and answered(ended))
    state = httpx.get(f"{server.url}/responses/{run_id}", headers=ADA, timeout=30).json()
    assert state["status"] == ended["status"]
    url = f"{server.url}/responses/{run_id}?stream=true"
    with httpx.Client(timeout=30) as http, http.stream("GET", url, headers=ADA) as replay:
        events = read_sse(replay)
    assert events[-1] == "[DONE]"
    assert events[-2]["type"] == f"response.{state['status']}"


@pytest.mark.parametrize(
    "query", ["stream=true&starting_after=-1", "stream=true&starting_after=x", "starting_after=3"]
)
def test_a_bad_starting_after_is_422(server: AgentProcess, query: str) -> None:
    run_id = start(server)["id"]
    response = httpx.get(f"{server.url}/responses/{run_id}?{query}", headers=ADA, timeout=30)
    assert response.status_code == 422
    assert "starting_after" in response.json()["detail"]
    wait_until_ended(server, run_id)


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [("/responses", "yes", "true or false"), ("/invocations", True, "POST /responses")],
)
def test_background_is_refused_where_it_cannot_be_served(
    server: AgentProcess, path: str, value: object, reason: str
) -> None:
    body = user_request("hello", background=value)
    response = httpx.post(f"{server.url}{path}", json=body, headers=ADA, timeout=30)
    assert response.status_code == 400
    assert reason in response.json()["detail"]


def test_beyond_the_run_limit_a_new_run_is_429(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store keeps AGENT_BACKGROUND_MAX_RUNS runs; it drops ended ones, never running ones."""
    release = asyncio.Event()

    async def agent(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()  # a run that lasts until the test lets it end
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def scenario() -> list[int]:
        app = background.BackgroundRuns(agent)
        transport = httpx.ASGITransport(app=app)
        statuses = []
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
            for _ in range(3):
                response = await http.post("/responses", json=user_request("hi", background=True))
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert "AGENT_BACKGROUND_MAX_RUNS" in response.json()["detail"]
            release.set()
            await asyncio.gather(*(run.task for run in store.running() if run.task))
            response = await http.post("/responses", json=user_request("hi", background=True))
            statuses.append(response.status_code)
        return statuses

    store = background.RunStore(max_runs=2)
    monkeypatch.setattr(background, "_store", store)
    assert asyncio.run(scenario()) == [200, 200, 429, 200]
