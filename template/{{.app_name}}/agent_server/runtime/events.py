"""Translation between the Responses API and LangChain messages, for agent.py."""

import json
from collections.abc import Iterable, Iterator
from typing import Any
from uuid import uuid4

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from mlflow.types.responses import (
    ResponsesAgentRequest,
    create_function_call_item,
    create_function_call_output_item,
    create_text_delta,
    create_text_output_item,
    to_chat_completions_input,
)


def to_chat_messages(request: ResponsesAgentRequest) -> list[dict[str, Any]]:
    """The request's input as chat messages, the form LangChain accepts."""
    return to_chat_completions_input([item.model_dump() for item in request.input])


def output_items(messages: Iterable[BaseMessage]) -> list[dict[str, Any]]:
    """Responses output items for the messages the agent added: text, tool calls and results."""
    items: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, AIMessage):
            if text := message.text:
                items.append(create_text_output_item(text=text, id=message.id or str(uuid4())))
            for call in message.tool_calls:
                call_id = call["id"] or str(uuid4())
                arguments = json.dumps(call["args"])
                items.append(create_function_call_item(call_id, call_id, call["name"], arguments))
        elif isinstance(message, ToolMessage):
            items.append(create_function_call_output_item(message.tool_call_id, message.text))
    return items


def stream_events(mode: str, data: Any) -> Iterator[dict[str, Any]]:
    """Responses stream events for one LangGraph stream part (stream_mode=["updates", "messages"]).

    "messages" parts carry LLM tokens and become text deltas; "updates" parts carry each node's
    finished messages and become output items.

    Events are ResponsesAgentStreamEvents as plain dicts: mlflow's server validates each one
    against that model anyway, so building the model here would validate every token twice.
    """
    if mode == "messages":
        chunk, _metadata = data
        if isinstance(chunk, AIMessageChunk) and (text := chunk.text):
            yield create_text_delta(delta=text, item_id=chunk.id)
    elif mode == "updates":
        for update in data.values():
            if isinstance(update, dict):
                for item in output_items(update.get("messages", [])):
                    yield {"type": "response.output_item.done", "item": item}
