"""A LangGraph tool-calling agent (create_agent on ChatDatabricks), logged from code."""

from collections.abc import Generator

import mlflow
from databricks_langchain import ChatDatabricks
from langchain.agents import create_agent
from langchain_core.tools import tool
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
    output_to_responses_items_stream,
    to_chat_completions_input,
)

LLM_ENDPOINT = "migrate-test-llm"


@tool
def get_weather(city: str) -> str:
    """The weather forecast for a city."""
    return f"sunny and 21C in {city}"


class LangGraphAgent(ResponsesAgent):
    def __init__(self) -> None:
        llm = ChatDatabricks(model=LLM_ENDPOINT, max_retries=0)
        self.graph = create_agent(llm, [get_weather], system_prompt="Use tools when they help.")

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        events = self.predict_stream(request)
        output = [e.item for e in events if e.type == "response.output_item.done"]
        return ResponsesAgentResponse(output=output, custom_outputs=request.custom_inputs)

    def predict_stream(
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        messages = to_chat_completions_input([item.model_dump() for item in request.input])
        for _, update in self.graph.stream({"messages": messages}, stream_mode=["updates"]):
            for node in update.values():
                if node and node.get("messages"):
                    yield from output_to_responses_items_stream(node["messages"])


mlflow.models.set_model(LangGraphAgent())
