"""The baseline: the least a server can do to answer an agent request with one tool round.

A bare Starlette app with the agent's routes (/invocations, /health) doing an agent's job in the
fewest steps: it sends the user's messages and one tool (`get_current_time`, as the generated
agent has) to the serving endpoint's chat completions; when the LLM asks for the tool it runs it
(the current time, as an ISO string), sends the result back in a second call and relays that
answer in the Responses format the agent server uses: the tool call and its result as
`response.output_item.done` items, one `response.output_text.delta` event per streamed chunk, the
finished text item, then `data: [DONE]`; or the whole output when not streaming. No agent
framework, no validation, no tracing: the practical floor for the server's overhead, measured in
the same run as the agents (bench/run.py) so that ratios to it are meaningful on a busy machine.

It runs in the bench environment (the `bench` dependency group: starlette, uvicorn with uvloop and
httptools, aiohttp), the same for every run, so it is a fixed floor whatever the template does.
Its upstream client is aiohttp: httpx's connection pool costs time quadratic in the number of open
connections (profiled: over half of the relay's CPU at 128 concurrent streams).
    DATABRICKS_HOST=http://127.0.0.1:PORT DATABRICKS_TOKEN=... SERVING_ENDPOINT=name \
        uv run --group bench python bench/baseline_relay.py --port 8001
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

HOST = os.environ.get("DATABRICKS_HOST", "").rstrip("/")
TOKEN = os.environ.get("DATABRICKS_TOKEN", "")
ENDPOINT = os.environ.get("SERVING_ENDPOINT", "baseline")

CHAT_URL = f"{HOST}/serving-endpoints/chat/completions"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_time",
            "description": "Return the current date and time in an IANA time zone.",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
            },
        },
    }
]

_client: aiohttp.ClientSession | None = None


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    global _client
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=aiohttp.ClientTimeout(total=120),
        connector=aiohttp.TCPConnector(limit=0),
    ) as client:
        _client = client
        yield


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("input") or body.get("messages") or []
    return [{"role": m["role"], "content": m["content"]} for m in items if "role" in m]


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def _item(item_id: str, text: str) -> dict[str, Any]:
    content = [{"text": text, "type": "output_text", "annotations": []}]
    return {"id": item_id, "content": content, "role": "assistant", "type": "message"}


def _run_tool(_arguments: str) -> str:
    """The trivial tool: the current time (the time zone is not looked at)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _tool_round(call: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """For one tool call: the messages for the second LLM call and the two output items."""
    result = _run_tool(call["arguments"])
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
        ],
    }
    tool = {"role": "tool", "tool_call_id": call["id"], "content": result}
    items = [
        {"type": "function_call", "id": call["id"], "call_id": call["id"], **call},
        {"type": "function_call_output", "call_id": call["id"], "output": result},
    ]
    return [assistant, tool], items


async def _stream_chat(
    messages: list[dict[str, Any]], on_text: Callable[[str], bytes]
) -> AsyncIterator[bytes | dict[str, Any]]:
    """One streamed LLM call: yields on_text(chunk) per text chunk, then the tool call if any."""
    assert _client is not None
    call: dict[str, Any] = {}
    body = {"model": ENDPOINT, "messages": messages, "stream": True, "tools": TOOLS}
    async with _client.post(CHAT_URL, json=body) as upstream:
        upstream.raise_for_status()
        async for raw in upstream.content:
            line = raw.strip()
            if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
                continue
            chunk = json.loads(line[5:])
            for choice in chunk.get("choices", []):
                delta = choice.get("delta") or {}
                if text := delta.get("content"):
                    yield on_text(text)
                for part in delta.get("tool_calls") or []:
                    function = part.get("function") or {}
                    call.setdefault("id", part.get("id"))
                    call["name"] = call.get("name", "") + (function.get("name") or "")
                    call["arguments"] = call.get("arguments", "") + (
                        function.get("arguments") or ""
                    )
    if call:
        yield call


async def _relay(messages: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    item_id = f"msg_{uuid.uuid4().hex}"
    parts: list[str] = []

    def on_text(text: str) -> bytes:
        parts.append(text)
        return _sse({"type": "response.output_text.delta", "item_id": item_id, "delta": text})

    for _round in range(2):  # the LLM, the tool, the LLM again
        call: dict[str, Any] | None = None
        async for out in _stream_chat(messages, on_text):
            if isinstance(out, dict):
                call = out
            else:
                yield out
        if call is None:
            break
        more, items = _tool_round(call)
        messages = [*messages, *more]
        for item in items:
            yield _sse({"type": "response.output_item.done", "item": item})
    yield _sse({"type": "response.output_item.done", "item": _item(item_id, "".join(parts))})
    yield _sse("[DONE]")


async def invocations(request: Request) -> Response:
    body = await request.json()
    messages = _messages(body)
    if body.get("stream"):
        return StreamingResponse(_relay(messages), media_type="text/event-stream")
    assert _client is not None
    output: list[dict[str, Any]] = []
    for _round in range(2):
        chat = {"model": ENDPOINT, "messages": messages, "tools": TOOLS}
        async with _client.post(CHAT_URL, json=chat) as upstream:
            upstream.raise_for_status()
            message = (await upstream.json())["choices"][0]["message"]
        if not message.get("tool_calls"):
            break
        function = message["tool_calls"][0]["function"]
        call = {"id": message["tool_calls"][0]["id"], **function}
        more, items = _tool_round(call)
        messages = [*messages, *more]
        output += items
    output.append(_item(f"msg_{uuid.uuid4().hex}", message.get("content") or ""))
    return JSONResponse({"object": "response", "output": output})


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "healthy"})


app = Starlette(
    routes=[
        Route("/invocations", invocations, methods=["POST"]),
        Route("/health", health),
    ],
    lifespan=lifespan,
)


def main() -> None:
    parser = argparse.ArgumentParser(description="Baseline relay server for bench/run.py")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
