"""Tests of the fake workspace, driven by the real Databricks and OpenAI clients."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_workspace import (
    DEFAULT_TOKEN,
    ENV_KEYS_TO_REMOVE,
    FILLER_TOKEN,
    FakeWorkspace,
    Reply,
    llm_reply,
    split_tokens,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL = "databricks-fake-model"
WEATHER_PROMPT = 'Please call get_weather with {"city": "Paris", "days": 2} now.'
CHAT_PATH = "/serving-endpoints/chat/completions"


@pytest.fixture
def fake() -> Iterator[FakeWorkspace]:
    with FakeWorkspace() as workspace:
        yield workspace


@pytest.fixture
def fake_env(fake: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> FakeWorkspace:
    """The fake, with the process environment pointing every Databricks client at it."""
    for key in ENV_KEYS_TO_REMOVE:
        monkeypatch.delenv(key, raising=False)
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    return fake


def auth_headers(token: str = DEFAULT_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def content_chunks(chunks: Any) -> list[str]:
    """The non-empty content deltas of OpenAI chat completion chunks."""
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def weather_tool() -> Any:
    tool = pytest.importorskip("langchain_core.tools").tool

    @tool
    def get_weather(city: str, days: int = 1) -> str:
        """Forecast the weather for a city."""
        return f"sunny in {city}"

    return get_weather


# --- The pure "LLM" ------------------------------------------------------------------------


def test_llm_echoes_last_user_message() -> None:
    messages = [{"role": "system", "content": "Be nice."}, user("first"), user("second")]
    assert llm_reply(messages) == Reply(text="You said: second")
    parts = [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]
    assert llm_reply([{"role": "user", "content": parts}]).text == "You said: hello world"


def test_llm_calls_named_tool_with_first_json_object() -> None:
    tools = [
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "function", "function": {"name": "get_weather"}},
    ]
    reply = llm_reply([user(WEATHER_PROMPT)], tools)
    assert reply.text == ""
    [call] = reply.tool_calls
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2}
    assert call.id.startswith("call_") and len(call.id) == 17
    assert llm_reply([user(WEATHER_PROMPT)], tools) == reply  # deterministic

    [no_args] = llm_reply([user("use get_time please")], tools).tool_calls
    assert (no_args.name, json.loads(no_args.arguments)) == ("get_time", {})
    assert llm_reply([user("forget_timeline")], tools).text == "You said: forget_timeline"


def test_llm_reports_tool_result() -> None:
    messages = [
        user(WEATHER_PROMPT),
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

    endpoint = client.serving_endpoints.get(MODEL)
    assert endpoint.name == MODEL
    assert endpoint.task == "llm/v1/chat"
    assert endpoint.state is not None and endpoint.state.ready is not None
    assert endpoint.state.ready.value == "READY"

    fake_env.configure(endpoints={MODEL})
    assert client.serving_endpoints.get(MODEL).name == MODEL
    with pytest.raises(NotFound):
        client.serving_endpoints.get("no-such-endpoint")

    first = fake_env.requests[0]
    assert (first.method, first.path) == ("GET", "/.well-known/databricks-config")
    assert "authorization" not in first.headers
    assert "databricks-sdk-py" in first.headers["user-agent"]
    me_request = fake_env.requests[1]
    assert me_request.path == "/api/2.0/preview/scim/v2/Me"
    assert me_request.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"


def test_workspace_client_with_bad_token(fake_env: FakeWorkspace) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import Unauthenticated

    client = WorkspaceClient(host=fake_env.url, token="dapi-wrong")
    with pytest.raises(Unauthenticated):
        client.current_user.me()


# --- databricks-langchain ------------------------------------------------------------------


def chat_model() -> Any:
    # Only the LangGraph flavour of the project depends on databricks-langchain.
    ChatDatabricks = pytest.importorskip("databricks_langchain").ChatDatabricks
    return ChatDatabricks(model=MODEL, max_retries=0)


def test_chat_databricks_invoke_and_stream(fake_env: FakeWorkspace) -> None:
    llm = chat_model()
    assert llm.invoke("hello there").content == "You said: hello there"
    chunks = [chunk.content for chunk in llm.stream("hello there")]
    assert "".join(chunks) == "You said: hello there"
    assert len([c for c in chunks if c]) == 4

    bodies = [r.body for r in fake_env.requests if r.path.endswith("/chat/completions")]
    assert [b["stream"] for b in bodies] == [False, True]
    assert all(b["model"] == MODEL for b in bodies)


def test_chat_databricks_async(fake_env: FakeWorkspace) -> None:
    async def run() -> tuple[str, str]:
        llm = chat_model()
        answer = await llm.ainvoke("async hello")
        streamed = [chunk.content async for chunk in llm.astream("async stream")]
        return str(answer.content), "".join(str(c) for c in streamed)

    assert asyncio.run(asyncio.wait_for(run(), timeout=30)) == (
        "You said: async hello",
        "You said: async stream",
    )


def test_chat_databricks_tool_call_round_trip(fake_env: FakeWorkspace) -> None:
    llm = chat_model().bind_tools([weather_tool()])  # skips unless langchain is installed
    from langchain_core.messages import HumanMessage, ToolMessage

    question = HumanMessage(WEATHER_PROMPT)
    ai = llm.invoke([question])
    [call] = ai.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "Paris", "days": 2}
    assert call["id"].startswith("call_")

    tools_sent = fake_env.requests[-1].body["tools"]
    assert tools_sent[0]["function"]["name"] == "get_weather"

    streamed = None
    for chunk in llm.stream([question]):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None
    assert [(c["name"], c["args"], c["id"]) for c in streamed.tool_calls] == [
        ("get_weather", {"city": "Paris", "days": 2}, call["id"])
    ]

    result = ToolMessage(content="sunny in Paris", tool_call_id=call["id"])
    follow_up = llm.invoke([question, ai, result])
    assert follow_up.content == "The tool said: sunny in Paris"
    assert follow_up.tool_calls == []


# --- databricks-openai ---------------------------------------------------------------------


def test_databricks_openai_streams_with_usage(fake_env: FakeWorkspace) -> None:
    client = pytest.importorskip("databricks_openai").DatabricksOpenAI(max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[user("count my words")],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = content_chunks(chunks)
    assert "".join(content) == "You said: count my words"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(content)
    assert len({c.id for c in chunks}) == 1

    request = fake_env.requests[-1]
    assert request.path == CHAT_PATH
    assert request.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert request.body["stream_options"] == {"include_usage": True}


def test_async_databricks_openai(fake_env: FakeWorkspace) -> None:
    AsyncDatabricksOpenAI = pytest.importorskip("databricks_openai").AsyncDatabricksOpenAI

    async def run() -> tuple[str, str, int]:
        client = AsyncDatabricksOpenAI(max_retries=0)
        completion = await client.chat.completions.create(model=MODEL, messages=[user("one")])
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[user("two")],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = [], 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage = chunk.usage.completion_tokens
        return str(completion.choices[0].message.content), "".join(text), usage

    assert asyncio.run(asyncio.wait_for(run(), timeout=30)) == ("You said: one", "You said: two", 3)


def test_fixed_token_count(fake_env: FakeWorkspace) -> None:
    client = pytest.importorskip("databricks_openai").DatabricksOpenAI(max_retries=0)
    fake_env.configure(tokens=7)
    stream = client.chat.completions.create(model=MODEL, messages=[user("hi")], stream=True)
    assert content_chunks(stream) == ["You ", "said: ", "hi"] + [FILLER_TOKEN] * 4

    fake_env.configure(tokens=2)
    completion = client.chat.completions.create(model=MODEL, messages=[user("hi there")])
    assert completion.choices[0].message.content == "You said: "
    assert completion.usage is not None and completion.usage.completion_tokens == 2


def test_token_delay_slows_answers(fake: FakeWorkspace) -> None:
    fake.configure(tokens=5, token_delay=0.05)
    body = {"model": MODEL, "messages": [user("slow")]}
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


# --- Errors, recording, admin API ----------------------------------------------------------


def test_bad_token_is_rejected(fake: FakeWorkspace) -> None:
    openai = pytest.importorskip("openai")
    body = {"model": MODEL, "messages": [user("hi")]}
    for headers in ({}, auth_headers("dapi-wrong")):
        response = httpx.post(f"{fake.url}{CHAT_PATH}", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error_code"] == "UNAUTHENTICATED"

    client = openai.OpenAI(
        base_url=f"{fake.url}/serving-endpoints", api_key="dapi-wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=[user("hi")])


def test_unknown_serving_endpoint(fake: FakeWorkspace) -> None:
    openai = pytest.importorskip("openai")
    fake.configure(endpoints=["known"])
    base_url = f"{fake.url}/serving-endpoints"
    client = openai.OpenAI(base_url=base_url, api_key=DEFAULT_TOKEN, max_retries=0)
    assert client.chat.completions.create(model="known", messages=[user("hi")]).choices
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="unknown", messages=[user("hi")])
    assert raised.value.response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


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

        body = {"model": "a", "messages": [user("x")]}
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
        body = {"model": MODEL, "messages": [user("a b c d e")]}
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
        body = {"model": MODEL, "messages": [user(f"request {i}")], "stream": True}
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
