"""Tests of the fake workspace: its "LLM", its routes and its command line, over plain HTTP
and the Databricks SDK."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from tests.fake_workspace import (
    DEFAULT_TOKEN,
    FILLER_TOKEN,
    FakeWorkspace,
    Reply,
    llm_reply,
    split_tokens,
)
from tests.support import CHAT_PATH, FAKE_MODEL, PROJECT_ROOT, auth_headers, user_message

WEATHER_PROMPT = 'Please call get_weather with {"city": "Paris", "days": 2} now.'


# --- The pure "LLM" ------------------------------------------------------------------------


def test_llm_echoes_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "Be nice."},
        user_message("first"),
        user_message("second"),
    ]
    assert llm_reply(messages) == Reply(text="You said: second")
    parts = [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]
    assert llm_reply([{"role": "user", "content": parts}]).text == "You said: hello world"


def test_llm_calls_named_tool_with_first_json_object() -> None:
    tools = [
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "function", "function": {"name": "get_weather"}},
    ]
    reply = llm_reply([user_message(WEATHER_PROMPT)], tools)
    assert reply.text == ""
    [call] = reply.tool_calls
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2}
    assert call.id.startswith("call_") and len(call.id) == 17
    assert llm_reply([user_message(WEATHER_PROMPT)], tools) == reply  # deterministic

    [no_args] = llm_reply([user_message("use get_time please")], tools).tool_calls
    assert (no_args.name, json.loads(no_args.arguments)) == ("get_time", {})
    assert llm_reply([user_message("forget_timeline")], tools).text == "You said: forget_timeline"


def test_llm_reports_tool_result() -> None:
    messages = [
        user_message(WEATHER_PROMPT),
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    assert llm_reply(messages, [{"function": {"name": "get_weather"}}]).text == (
        "The tool said: sunny"
    )


def test_split_tokens() -> None:
    text = "  You said:  hello\nworld "
    assert "".join(split_tokens(text)) == text
    assert split_tokens("You said: hi") == ["You ", "said: ", "hi"]
    assert split_tokens("You said: hi", 2) == ["You ", "said: "]
    assert split_tokens("You said: hi", 5) == ["You ", "said: ", "hi", FILLER_TOKEN, FILLER_TOKEN]
    assert split_tokens("", None) == []


# --- databricks-sdk ------------------------------------------------------------------------


def test_workspace_client(fake_env: FakeWorkspace) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import NotFound

    started = time.monotonic()
    client = WorkspaceClient()
    # Well under a second in practice; the bound only catches the SDK's 300 s retry loop.
    assert time.monotonic() - started < 5
    assert client.config.auth_type == "pat"
    assert client.config.workspace_id == "1234567890123456"

    me = client.current_user.me()
    assert (me.user_name, me.display_name, me.active) == ("tester@example.com", "Tester", True)

    endpoint = client.serving_endpoints.get(FAKE_MODEL)
    assert endpoint.name == FAKE_MODEL
    assert endpoint.task == "llm/v1/chat"
    assert endpoint.state is not None and endpoint.state.ready is not None
    assert endpoint.state.ready.value == "READY"

    fake_env.configure(endpoints={FAKE_MODEL})
    assert client.serving_endpoints.get(FAKE_MODEL).name == FAKE_MODEL
    with pytest.raises(NotFound):
        client.serving_endpoints.get("no-such-endpoint")

    first = fake_env.requests[0]
    assert (first.method, first.path) == ("GET", "/.well-known/databricks-config")
    assert "authorization" not in first.headers
    assert "databricks-sdk-py" in first.headers["user-agent"]
    me_request = fake_env.requests[1]
    assert me_request.path == "/api/2.0/preview/scim/v2/Me"
    assert me_request.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"


def test_me_answers_as_a_service_principal(fake_env: FakeWorkspace) -> None:
    from databricks.sdk import WorkspaceClient

    client = WorkspaceClient()
    fake_env.configure(identity="service_principal")
    me = client.current_user.me()
    # A service principal's userName is its application id (a UUID): the CLI's test for one.
    assert me.user_name is not None and str(uuid.UUID(me.user_name)) == me.user_name
    assert me.display_name == "github-deploy"
    fake_env.configure(identity="user")
    assert client.current_user.me().user_name == "tester@example.com"
    with pytest.raises(ValueError, match="identity must be one of"):
        fake_env.configure(identity="robot")


def test_workspace_client_with_bad_token(fake_env: FakeWorkspace) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import Unauthenticated

    client = WorkspaceClient(host=fake_env.url, token="dapi-wrong")
    with pytest.raises(Unauthenticated):
        client.current_user.me()


def test_token_delay_slows_answers(fake: FakeWorkspace) -> None:
    fake.configure(tokens=5, token_delay=0.05)
    body = {"model": FAKE_MODEL, "messages": [user_message("slow")]}
    with httpx.Client(base_url=fake.url, headers=auth_headers(), timeout=30) as client:
        started = time.monotonic()
        assert client.post(CHAT_PATH, json=body).status_code == 200
        assert time.monotonic() - started >= 0.25

        started = time.monotonic()
        with client.stream("POST", CHAT_PATH, json={**body, "stream": True}) as response:
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert time.monotonic() - started >= 0.25
    assert events[-1] == "data: [DONE]"
    assert len(events) == 1 + 5 + 1 + 1  # role, tokens, finish, [DONE]


def test_embeddings_endpoint_gives_near_vectors_for_texts_sharing_words(
    fake: FakeWorkspace,
) -> None:
    """The OpenAI embeddings format on /invocations, as DatabricksEmbeddings calls it."""
    texts = ["I play the cello", "cello lessons", "my dog is called Biscuit", "!"]
    response = httpx.post(
        f"{fake.url}/serving-endpoints/databricks-gte-large-en/invocations",
        json={"input": texts},
        headers=auth_headers(),
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2, 3]
    cello, lessons, dog, no_words = (d["embedding"] for d in data)
    assert len(cello) == 1024
    assert abs(sum(v * v for v in cello) - 1) < 1e-9
    assert not any(no_words)

    def similarity(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert similarity(cello, lessons) > similarity(cello, dog)
    # A chat body still reaches the LLM.
    chat = {"messages": [user_message("x")]}
    answer = httpx.post(
        f"{fake.url}/serving-endpoints/databricks-gte-large-en/invocations",
        json=chat,
        headers=auth_headers(),
    )
    assert answer.json()["choices"][0]["message"]["content"] == "You said: x"


# --- Errors, recording, admin API ----------------------------------------------------------


def test_unknown_path_is_404_and_recorded(fake: FakeWorkspace) -> None:
    response = httpx.get(f"{fake.url}/api/2.0/nothing/here?x=1", headers=auth_headers())
    assert response.status_code == 404
    assert response.json() == {
        "error_code": "ENDPOINT_NOT_FOUND",
        "message": "No API found for 'GET /api/2.0/nothing/here'",
    }
    [recorded] = fake.requests
    assert (recorded.method, recorded.path) == ("GET", "/api/2.0/nothing/here")
    assert recorded.query == "x=1"
    assert recorded.body is None
    fake.clear_requests()
    assert fake.requests == []


def test_admin_api(fake: FakeWorkspace) -> None:
    with httpx.Client(base_url=fake.url, timeout=10) as client:
        config = client.post("/__fake__/config", json={"tokens": 4, "endpoints": ["a"]}).json()
        assert (config["tokens"], config["endpoints"]) == (4, ["a"])
        assert fake.settings.tokens == 4
        assert client.post("/__fake__/config", json={"nope": 1}).status_code == 400

        body = {"model": "a", "messages": [user_message("x")]}
        answer = client.post(CHAT_PATH, json=body, headers=auth_headers())
        assert answer.json()["choices"][0]["message"]["content"] == "You said: x lorem"

        [recorded] = client.get("/__fake__/requests").json()  # admin calls are not recorded
        assert (recorded["path"], recorded["body"]) == (CHAT_PATH, body)
        assert client.delete("/__fake__/requests").status_code == 200
        assert client.get("/__fake__/requests").json() == []


def test_env_and_environ(fake: FakeWorkspace) -> None:
    env = fake.env()
    assert env["DATABRICKS_HOST"] == fake.url and fake.url.startswith("http://127.0.0.1:")
    assert env["DATABRICKS_TOKEN"] == DEFAULT_TOKEN
    assert not os.path.exists(env["DATABRICKS_CONFIG_FILE"])
    environ = fake.environ({"DATABRICKS_CLIENT_ID": "x", "PATH": "/bin"})
    assert "DATABRICKS_CLIENT_ID" not in environ and environ["PATH"] == "/bin"


def test_stop_ends_running_streams() -> None:
    fake = FakeWorkspace(tokens=1000, token_delay=0.05).start()
    body = {"model": FAKE_MODEL, "messages": [user_message("long")], "stream": True}
    events: list[str] = []

    def read() -> None:
        with httpx.stream(
            "POST", f"{fake.url}{CHAT_PATH}", json=body, headers=auth_headers(), timeout=30
        ) as response:
            events.extend(line for line in response.iter_lines() if line.startswith("data: "))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while len(fake.requests) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    fake.stop()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert events and "data: [DONE]" not in events


# --- Command line and concurrency ----------------------------------------------------------


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError("no output from the fake workspace process")
    return process.stdout.readline()


def test_command_line() -> None:
    command = [sys.executable, "-m", "tests.fake_workspace", "--port", "0", "--tokens", "3"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = read_line(process, timeout=30).strip()
        assert line.startswith("FAKE_WORKSPACE_URL=http://127.0.0.1:")
        url = line.removeprefix("FAKE_WORKSPACE_URL=")
        body = {"model": FAKE_MODEL, "messages": [user_message("a b c d e")]}
        response = httpx.post(f"{url}{CHAT_PATH}", json=body, headers=auth_headers(), timeout=10)
        assert response.json()["choices"][0]["message"]["content"] == "You said: a "
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_concurrent_streams(fake: FakeWorkspace) -> None:
    fake.configure(tokens=20, token_delay=0.01)

    async def one(client: httpx.AsyncClient, i: int) -> list[str]:
        body = {"model": FAKE_MODEL, "messages": [user_message(f"request {i}")], "stream": True}
        async with client.stream("POST", CHAT_PATH, json=body) as r:
            assert r.status_code == 200
            lines = [line async for line in r.aiter_lines() if line.startswith("data: {")]
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines]
        return [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]

    async def run() -> list[list[str]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=fake.url, headers=auth_headers(), limits=limits, timeout=30
        ) as client:
            return await asyncio.gather(*(one(client, i) for i in range(64)))

    started = time.monotonic()
    results = asyncio.run(asyncio.wait_for(run(), timeout=60))
    elapsed = time.monotonic() - started
    for i, contents in enumerate(results):
        tokens = [c for c in contents if c]
        assert tokens == ["You ", "said: ", "request ", str(i)] + [FILLER_TOKEN] * 16
    assert elapsed >= 0.2
