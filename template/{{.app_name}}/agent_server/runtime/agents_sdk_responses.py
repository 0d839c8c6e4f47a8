"""Translation between the Responses API and the OpenAI Agents SDK's run items.

Used by agents_sdk_runner.py, which runs the agent of agent.py. The output
items are the Responses API's: a `message` per answer, a `function_call` per tool call and a
`function_call_output` per tool result.
"""

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from agents import (
    ItemHelpers,
    MessageOutputItem,
    RawResponsesStreamEvent,
    RunItem,
    RunItemStreamEvent,
    RunResultStreaming,
    StreamEvent,
    ToolCallItem,
    ToolCallOutputItem,
)
from agents.memory import Session
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    create_function_call_item,
    create_function_call_output_item,
    create_text_delta,
    create_text_output_item,
)

# The Agents SDK gives every item of a chat-completions answer this placeholder id.
_FAKE_ID = "__fake_id__"


def to_input_items(request: ResponsesAgentRequest) -> list[Any]:
    """The request's input as the Responses input items the Agents SDK accepts."""
    return [item.model_dump(exclude_none=True) for item in request.input]


@dataclass
class Turn:
    """One run of the agent: its input items, the session it continues (None: the request is
    the whole conversation), and the custom_outputs of its answer."""

    items: list[Any]
    session: Session | None = None
    custom_outputs: dict[str, Any] | None = None

    @classmethod
    def of(cls, request: ResponsesAgentRequest) -> "Turn":
        return cls(to_input_items(request), None, request.custom_inputs)

    def response(self, new_items: Iterable[RunItem]) -> ResponsesAgentResponse:
        """The answer: the items the run added (RunResult.new_items)."""
        return ResponsesAgentResponse(
            output=output_items(new_items), custom_outputs=self.custom_outputs
        )

    def completed(self) -> dict[str, Any]:
        """A last stream event, with custom_outputs: how a stream returns them."""
        return {
            "type": "response.completed",
            "response": {"output": [], "status": "completed"},
            "custom_outputs": self.custom_outputs,
        }


class ItemIds:
    """Real, unique ids for the items of one model answer, in place of the SDK's placeholder.

    Text deltas and the finished message of the same answer must share an id: `new_answer()`
    starts a new mapping at each model call.
    """

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def new_answer(self) -> None:
        self._ids = {}

    def of(self, item_id: str | None) -> str:
        if item_id and item_id != _FAKE_ID:
            return item_id
        key = item_id or _FAKE_ID
        if key not in self._ids:
            self._ids[key] = str(uuid4())
        return self._ids[key]


def output_item(item: RunItem, ids: ItemIds) -> dict[str, Any] | None:
    """The Responses output item for one run item: text, tool call or tool result."""
    if isinstance(item, MessageOutputItem):
        text = ItemHelpers.text_message_output(item)
        return create_text_output_item(text=text, id=ids.of(item.raw_item.id)) if text else None
    if isinstance(item, ToolCallItem):
        raw = item.raw_item
        call_id = getattr(raw, "call_id", None)
        name = getattr(raw, "name", None)
        if call_id is None or name is None:  # a hosted tool: not one of this agent's functions
            return None
        arguments = getattr(raw, "arguments", None) or "{}"
        item_id = getattr(raw, "id", None)
        # A call without an id of its own (chat completions give none) is known by its call_id.
        item_id = item_id if item_id and item_id != _FAKE_ID else call_id
        return create_function_call_item(item_id, call_id, name, arguments)
    if isinstance(item, ToolCallOutputItem):
        raw = item.raw_item
        call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
        if call_id is None:
            return None
        output = item.output if isinstance(item.output, str) else json.dumps(item.output)
        return create_function_call_output_item(call_id, output)
    return None


def output_items(items: Iterable[RunItem]) -> list[dict[str, Any]]:
    """Responses output items for the items a run added (RunResult.new_items)."""
    ids = ItemIds()
    result = []
    for item in items:
        if isinstance(item, MessageOutputItem):
            ids.new_answer()  # a model answer has at most one message
        if (converted := output_item(item, ids)) is not None:
            result.append(converted)
    return result


def stream_events(event: StreamEvent, ids: ItemIds) -> Iterator[dict[str, Any]]:
    """Responses stream events for one Agents SDK stream event.

    Raw model events carry the LLM's tokens and become text deltas; run items carry finished
    messages, tool calls and tool results and become output items. Events are plain dicts:
    mlflow's server validates each one anyway.
    """
    if isinstance(event, RawResponsesStreamEvent):
        data = event.data
        if data.type == "response.created":
            ids.new_answer()
        elif data.type == "response.output_text.delta" and data.delta:
            yield create_text_delta(delta=data.delta, item_id=ids.of(data.item_id))
    elif isinstance(event, RunItemStreamEvent):
        if (item := output_item(event.item, ids)) is not None:
            yield {"type": "response.output_item.done", "item": item}


async def response_events(run: RunResultStreaming) -> AsyncGenerator[dict[str, Any], None]:
    """The Responses stream events of a streamed run, as they come.

    When the consumer stops early (the client went away), the run is cancelled, which stops its
    LLM call at once: closing the SDK's event stream alone would wait for the run to finish.
    Close this generator explicitly (contextlib.aclosing): a generator that is only dropped is
    closed whenever its event loop next gets to it.
    """
    ids = ItemIds()
    events = run.stream_events()
    try:
        async for event in events:
            for converted in stream_events(event, ids):
                yield converted
    finally:
        if not run.is_complete:
            run.cancel()
        await events.aclose()


def stream_on_loop(
    loop: asyncio.AbstractEventLoop, start: Callable[[], Awaitable[RunResultStreaming]]
) -> Iterator[dict[str, Any]]:
    """The Responses stream events of a run, for sync code: `loop` runs for each event.

    `start()` starts the run on the loop (Runner.run_streamed needs a running loop). Each event
    is yielded as soon as the run produces it. Closing this generator (the client went away)
    cancels the run on the loop before it returns.
    """
    run = loop.run_until_complete(start())
    events = response_events(run)
    try:
        while True:
            try:
                event = loop.run_until_complete(anext(events))
            except StopAsyncIteration:
                return
            yield event
    finally:
        loop.run_until_complete(events.aclose())
        if not run.is_complete:  # closed before the first event: response_events never ran
            run.cancel()
            loop.run_until_complete(asyncio.sleep(0))  # lets the cancelled tasks end
