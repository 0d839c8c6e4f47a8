"""An agent with only predict() (no predict_stream), logged from code."""

import mlflow
from databricks_openai import DatabricksOpenAI
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse

LLM_ENDPOINT = "migrate-test-llm"


class PredictOnlyAgent(ResponsesAgent):
    def __init__(self) -> None:
        self.client = DatabricksOpenAI()

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        messages = self.prep_msgs_for_cc_llm([item.model_dump() for item in request.input])
        answer = self.client.chat.completions.create(model=LLM_ENDPOINT, messages=messages)
        text = answer.choices[0].message.content or ""
        return ResponsesAgentResponse(
            output=[
                self.create_text_output_item(text, answer.id),
                self.create_text_output_item(f"({len(text)} characters)", f"{answer.id}-n"),
            ],
            custom_outputs={"model": LLM_ENDPOINT, **(request.custom_inputs or {})},
        )


mlflow.models.set_model(PredictOnlyAgent())
