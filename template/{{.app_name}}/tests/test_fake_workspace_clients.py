"""Tests of the fake workspace driven by the LLM clients the agent uses: databricks-langchain's
ChatDatabricks and databricks-openai's (Async)DatabricksOpenAI."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from databricks_langchain import ChatDatabricks
from databricks_openai import AsyncDatabricksOpenAI, DatabricksOpenAI
from langchain_core.tools import tool

from tests.fake_workspace import DEFAULT_TOKEN, FILLER_TOKEN, FakeWorkspace
from tests.support import CHAT_PATH, FAKE_MODEL, auth_headers, user_message

WEATHER_PROMPT = 'Please call get_weather with {"city": "Paris", "days": 2} now.'


def content_chunks(chunks: Any) -> list[str]:
    """The non-empty content deltas of OpenAI chat completion chunks."""
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def weather_tool() -> Any:

    @tool
    def get_weather(city: str, days: int = 1) -> str:
        """Forecast the weather for a city."""
        return f"sunny in {city}"

    return get_weather


def chat_model() -> Any:
    # Only the LangGraph flavour of the project depends on databricks-langchain.
    return ChatDatabricks(model=FAKE_MODEL, max_retries=0)


def test_chat_databricks_invoke_and_stream(fake_env: FakeWorkspace) -> None:
    llm = chat_model()
    assert llm.invoke("hello there").content == "You said: hello there"
    chunks = [chunk.content for chunk in llm.stream("hello there")]
    assert "".join(chunks) == "You said: hello there"
    assert len([c for c in chunks if c]) == 4

    bodies = [r.body for r in fake_env.requests if r.path.endswith("/chat/completions")]
    assert [b["stream"] for b in bodies] == [False, True]
    assert all(b["model"] == FAKE_MODEL for b in bodies)


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


def test_databricks_openai_streams_with_usage(fake_env: FakeWorkspace) -> None:
    client = DatabricksOpenAI(max_retries=0)
    stream = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[user_message("count my words")],
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

    async def run() -> tuple[str, str, int]:
        client = AsyncDatabricksOpenAI(max_retries=0)
        completion = await client.chat.completions.create(
            model=FAKE_MODEL, messages=[user_message("one")]
        )
        stream = await client.chat.completions.create(
            model=FAKE_MODEL,
            messages=[user_message("two")],
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
    client = DatabricksOpenAI(max_retries=0)
    fake_env.configure(tokens=7)
    stream = client.chat.completions.create(
        model=FAKE_MODEL, messages=[user_message("hi")], stream=True
    )
    assert content_chunks(stream) == ["You ", "said: ", "hi"] + [FILLER_TOKEN] * 4

    fake_env.configure(tokens=2)
    completion = client.chat.completions.create(
        model=FAKE_MODEL, messages=[user_message("hi there")]
    )
    assert completion.choices[0].message.content == "You said: "
    assert completion.usage is not None and completion.usage.completion_tokens == 2


def test_bad_token_is_rejected(fake: FakeWorkspace) -> None:
    body = {"model": FAKE_MODEL, "messages": [user_message("hi")]}
    for headers in ({}, auth_headers("dapi-wrong")):
        response = httpx.post(f"{fake.url}{CHAT_PATH}", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error_code"] == "UNAUTHENTICATED"

    client = openai.OpenAI(
        base_url=f"{fake.url}/serving-endpoints", api_key="dapi-wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=FAKE_MODEL, messages=[user_message("hi")])


def test_unknown_serving_endpoint(fake: FakeWorkspace) -> None:
    fake.configure(endpoints=["known"])
    base_url = f"{fake.url}/serving-endpoints"
    client = openai.OpenAI(base_url=base_url, api_key=DEFAULT_TOKEN, max_retries=0)
    assert client.chat.completions.create(model="known", messages=[user_message("hi")]).choices
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="unknown", messages=[user_message("hi")])
    assert raised.value.response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
