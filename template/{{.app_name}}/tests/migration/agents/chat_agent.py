"""A chat agent on DatabricksOpenAI with predict() and predict_stream(), logged from code."""

from collections.abc import Generator
from uuid import uuid4

import mlflow
from databricks_openai import DatabricksOpenAI
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)

LLM_ENDPOINT = "migrate-test-llm"
SYSTEM_PROMPT = "You are a helpful assistant."


class ChatAgent(ResponsesAgent):
    def __init__(self) -> None:
        self.client = DatabricksOpenAI()

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        events = self.predict_stream(request)
        output = [e.item for e in events if e.type == "response.output_item.done"]
        return ResponsesAgentResponse(output=output, custom_outputs=request.custom_inputs)

    def predict_stream(
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        messages += self.prep_msgs_for_cc_llm([item.model_dump() for item in request.input])
        item_id = str(uuid4())
        text = ""
        chunks = self.client.chat.completions.create(
            model=LLM_ENDPOINT, messages=messages, stream=True
        )
        for chunk in chunks:
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                text += delta
                yield ResponsesAgentStreamEvent(**self.create_text_delta(delta, item_id))
        yield ResponsesAgentStreamEvent(
            type="response.output_item.done",
            item=self.create_text_output_item(text, item_id),
        )


mlflow.models.set_model(ChatAgent())
