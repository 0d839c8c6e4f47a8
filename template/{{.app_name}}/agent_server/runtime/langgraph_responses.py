"""Translation between the Responses API and LangChain messages, for agent.py's handlers."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
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


# The parts of a LangGraph stream that stream_events translates.
STREAM_MODE = ["updates", "messages"]


@dataclass
class Turn:
    """One request to the agent: its input, its LangGraph config, and how to answer it.

    Without memory a turn is the whole request. With memory (memory.py) it is the messages the
    conversation's checkpoint lacks, and its answer carries the conversation's ids.
    """

    messages: list[dict[str, Any]]
    custom_inputs: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    # How many messages the conversation's checkpoint held before this turn.
    prior: int = 0
    # The conversation's ids (thread_id, user_id), for the client to continue it.
    ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, request: ResponsesAgentRequest) -> "Turn":
        return cls(to_chat_messages(request), request.custom_inputs)

    @property
    def input(self) -> dict[str, Any]:
        return {"messages": self.messages}

    def custom_outputs(self) -> dict[str, Any] | None:
        return {**(self.custom_inputs or {}), **self.ids} if self.ids else self.custom_inputs

    def response(self, state: dict[str, Any]) -> ResponsesAgentResponse:
        """The answer: the messages the agent added in the final state."""
        added = state["messages"][self.prior + len(self.messages) :]
        return ResponsesAgentResponse(
            output=output_items(added), custom_outputs=self.custom_outputs()
        )

    def completed(self) -> dict[str, Any]:
        """A last stream event, with custom_outputs: how a stream returns the conversation's ids."""
        return {
            "type": "response.completed",
            "response": {"output": [], "status": "completed"},
            "custom_outputs": self.custom_outputs(),
        }
