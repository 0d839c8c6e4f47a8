"""A trace span for each LLM call and each tool call of the LangGraph agent.

mlflow's agent server records one span per request, with its input and output; these spans nest
under it. They replace mlflow.langchain.autolog(), which also records every streamed token as a
span event and, in async code, sends each token to a thread pool: profiled, most of the server's
CPU time when it streams. Here nothing is done per token.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import mlflow
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command
from mlflow.entities import SpanType

ToolResult = ToolMessage | Command[Any]


def _llm_span() -> Any:
    return mlflow.start_span(name="llm", span_type=SpanType.CHAT_MODEL)


def _tool_span(request: ToolCallRequest) -> Any:
    return mlflow.start_span(name=request.tool_call["name"], span_type=SpanType.TOOL)


class TraceSteps(AgentMiddleware):
    """The spans, as agent middleware: LangChain calls the sync or the async hooks as it runs."""

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        with _llm_span() as span:
            span.set_inputs({"messages": request.messages})
            response = handler(request)
            span.set_outputs(response.result)
            return response

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        with _llm_span() as span:
            span.set_inputs({"messages": request.messages})
            response = await handler(request)
            span.set_outputs(response.result)
            return response

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolResult]
    ) -> ToolResult:
        with _tool_span(request) as span:
            span.set_inputs(request.tool_call["args"])
            result = handler(request)
            span.set_outputs(result)
            return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> ToolResult:
        with _tool_span(request) as span:
            span.set_inputs(request.tool_call["args"])
            result = await handler(request)
            span.set_outputs(result)
            return result
