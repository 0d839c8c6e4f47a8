"""The deterministic "LLM" and the OpenAI-compatible serving endpoint routes."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from .core import FILLER_TOKEN, Call, endpoint_exists, error, no_such_endpoint, route

# Asked last, the fake model answers with the conversation's first user message.
RECALL_QUESTION = "What did I say first?"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as in the OpenAI API


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text") or "")
            for part in content
            if isinstance(part, str | dict)
        )
    return ""


def llm_reply(messages: list[Mapping[str, Any]], tools: list[Any] | None = None) -> Reply:
    """The fake model: echo the user, call a tool named in the prompt, or report a tool result.

    - last message is a tool result -> "The tool said: <its content>";
    - a tool's function name appears as a word in the last user message -> one call to the
      earliest-named tool, its arguments the first JSON object after the name (else {});
    - the last user message is RECALL_QUESTION -> "You first said: <first user message>", so
      that tests see which conversation the model was given (agent memory);
    - otherwise -> "You said: <last user message>".
    """
    if messages and messages[-1].get("role") == "tool":
        return Reply(text=f"The tool said: {message_text(messages[-1])}")
    text = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    if text.strip() == RECALL_QUESTION:
        first = next(message_text(m) for m in messages if m.get("role") == "user")
        return Reply(text=f"You first said: {first}")
    call = _find_tool_call(text, tools or [])
    if call is not None:
        return Reply(tool_calls=(call,))
    return Reply(text=f"You said: {text}")


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return ""
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) else ""


def _find_tool_call(text: str, tools: list[Any]) -> ToolCall | None:
    best: tuple[int, int, str] | None = None  # (position, -length, name): earliest, then longest
    for name in filter(None, map(_tool_name, tools)):
        match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text)
        if match and (best is None or (match.start(), -len(name), name) < best):
            best = (match.start(), -len(name), name)
    if best is None:
        return None
    position, _, name = best
    arguments = _first_json_object(text, position + len(name))
    call_id = "call_" + hashlib.sha1((name + text).encode()).hexdigest()[:12]
    return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))


def _first_json_object(text: str, start: int) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    position = text.find("{", start)
    while position != -1:
        try:
            value, _ = decoder.raw_decode(text, position)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        position = text.find("{", position + 1)
    return {}


_TOKEN_RE = re.compile(r"^\s+|\S+\s*")


def split_tokens(text: str, count: int | None = None) -> list[str]:
    """Word tokens that keep their following whitespace (so "".join() gives the text back).

    With a count, exactly that many: the words (truncated) then FILLER_TOKEN padding.
    """
    words = _TOKEN_RE.findall(text)
    if count is None:
        return words
    return words[:count] + [FILLER_TOKEN] * max(0, count - len(words))


@route("POST", "/serving-endpoints/chat/completions")
async def chat_completions(call: Call) -> Response:
    model = call.body.get("model") if isinstance(call.body, dict) else None
    return await _chat(call, model)


@route("POST", "/serving-endpoints/{name}/invocations")
async def invocations(call: Call) -> Response:
    return await _chat(call, call.params["name"])


async def _chat(call: Call, model: Any) -> Response:
    body = call.body if isinstance(call.body, dict) else {}
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return error(400, "INVALID_PARAMETER_VALUE", "'messages' must be a list of objects")
    if not isinstance(model, str) or not model:
        return error(400, "INVALID_PARAMETER_VALUE", "'model' is required")
    if not endpoint_exists(call.settings, model):
        return no_such_endpoint(model)

    reply = llm_reply(messages, body.get("tools"))
    tokens = [] if reply.tool_calls else split_tokens(reply.text, call.settings.tokens)
    prompt_tokens = sum(len(split_tokens(message_text(m))) for m in messages)
    completion_tokens = len(tokens) + len(reply.tool_calls)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    digest = hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    head = {"id": f"chatcmpl-{digest[:24]}", "created": int(time.time()), "model": model}

    if body.get("stream"):
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        chunks = _stream_chunks(call, head, reply, tokens, usage if include_usage else None)
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    if not await call.pause(call.settings.token_delay * completion_tokens):
        return error(503, "TEMPORARILY_UNAVAILABLE", "The fake workspace is stopping.")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens) or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    choice = {"index": 0, "message": message, "finish_reason": _finish_reason(reply)}
    return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


async def _stream_chunks(
    call: Call,
    head: dict[str, Any],
    reply: Reply,
    tokens: list[str],
    usage: dict[str, int] | None,
) -> AsyncIterator[str]:
    """OpenAI `chat.completion.chunk` server-sent events, ending with `data: [DONE]`.

    The stream is cut short (no [DONE]) when the fake stops.
    """
    delay = call.settings.token_delay

    def event(delta: dict[str, Any] | None, finish_reason: str | None = None) -> str:
        chunk: dict[str, Any] = {**head, "object": "chat.completion.chunk", "choices": []}
        if delta is None:
            chunk["usage"] = usage
        else:
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"

    yield event({"role": "assistant", "content": ""})
    for token in tokens:
        if not await call.pause(delay):
            return
        yield event({"content": token})
    for index, tool_call in enumerate(reply.tool_calls):
        if not await call.pause(delay):
            return
        opening = {"index": index, "id": tool_call.id, "type": "function"}
        function = {"name": tool_call.name, "arguments": ""}
        yield event({"tool_calls": [{**opening, "function": function}]})
        arguments = {"arguments": tool_call.arguments}
        yield event({"tool_calls": [{"index": index, "function": arguments}]})
    yield event({}, _finish_reason(reply))
    if usage is not None:
        yield event(None)
    yield "data: [DONE]\n\n"
