"""The baseline: the least a server can do to answer an agent request from the LLM endpoint.

A bare Starlette app with the agent's routes (/invocations, /health) that forwards the user's
messages to the serving endpoint's chat completions and relays the answer in the Responses format
the agent server uses: one `response.output_text.delta` event per streamed chunk, the finished
`response.output_item.done`, then `data: [DONE]`; or the whole output when not streaming. No agent
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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


async def _relay(messages: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    assert _client is not None
    item_id = f"msg_{uuid.uuid4().hex}"
    parts: list[str] = []
    body = {"model": ENDPOINT, "messages": messages, "stream": True}
    async with _client.post(CHAT_URL, json=body) as upstream:
        upstream.raise_for_status()
        async for raw in upstream.content:
            line = raw.strip()
            if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
                continue
            chunk = json.loads(line[5:])
            for choice in chunk.get("choices", []):
                if text := (choice.get("delta") or {}).get("content"):
                    parts.append(text)
                    yield _sse(
                        {"type": "response.output_text.delta", "item_id": item_id, "delta": text}
                    )
    yield _sse({"type": "response.output_item.done", "item": _item(item_id, "".join(parts))})
    yield _sse("[DONE]")


async def invocations(request: Request) -> Response:
    body = await request.json()
    messages = _messages(body)
    if body.get("stream"):
        return StreamingResponse(_relay(messages), media_type="text/event-stream")
    assert _client is not None
    async with _client.post(CHAT_URL, json={"model": ENDPOINT, "messages": messages}) as upstream:
        upstream.raise_for_status()
        message = (await upstream.json())["choices"][0]["message"]
    item = _item(f"msg_{uuid.uuid4().hex}", message.get("content") or "")
    return JSONResponse({"object": "response", "output": [item]})


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
