"""A stateful agent: conversations kept in memory, keyed by thread_id, logged from code.

The thread is custom_inputs["thread_id"], else context.conversation_id; the user is
context.user_id, else custom_inputs["user_id"]. Both come back in custom_outputs.
"""

from collections.abc import Generator

import mlflow
from databricks_openai import DatabricksOpenAI
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)

LLM_ENDPOINT = "migrate-test-llm"


class StatefulAgent(ResponsesAgent):
    def __init__(self) -> None:
        self.client = DatabricksOpenAI()
        self.threads: dict[str, list[dict]] = {}

    def thread_and_user(self, request: ResponsesAgentRequest) -> tuple[str, str | None]:
        custom = request.custom_inputs or {}
        context = request.context
        thread = custom.get("thread_id") or (context.conversation_id if context else None)
        user = (context.user_id if context else None) or custom.get("user_id")
        return str(thread or "default"), user

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        thread, user = self.thread_and_user(request)
        history = self.threads.setdefault(thread, [])
        history += self.prep_msgs_for_cc_llm([item.model_dump() for item in request.input])
        answer = self.client.chat.completions.create(model=LLM_ENDPOINT, messages=history)
        text = answer.choices[0].message.content or ""
        history.append({"role": "assistant", "content": text})
        turn = sum(1 for message in history if message["role"] == "user")
        return ResponsesAgentResponse(
            output=[self.create_text_output_item(f"{text} (turn {turn})", answer.id)],
            custom_outputs={"thread_id": thread, "user_id": user, "turn": turn},
        )

    def predict_stream(
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        response = self.predict(request)
        for item in response.output:
            yield ResponsesAgentStreamEvent(
                type="response.output_item.done",
                item=item,
                custom_outputs=response.custom_outputs,
            )


mlflow.models.set_model(StatefulAgent())
