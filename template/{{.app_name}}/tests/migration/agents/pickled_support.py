"""A ResponsesAgent logged as a pickled python_model instance (its class ships as code_paths).

The tests import this module under its own top-level name, so cloudpickle stores a reference to
`pickled_support.PickledAgent`: the migrated app must find it in the model's copied code.
"""

from databricks_openai import DatabricksOpenAI
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse

LLM_ENDPOINT = "migrate-test-llm"


class PickledAgent(ResponsesAgent):
    def __init__(self, style: str) -> None:
        self.style = style  # pickled with the instance
        self.client: DatabricksOpenAI | None = None

    def __getstate__(self) -> dict:
        return {"style": self.style}

    def __setstate__(self, state: dict) -> None:
        self.style = state["style"]
        self.client = None

    def load_context(self, context: object) -> None:
        self.client = DatabricksOpenAI()

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        assert self.client is not None, "load_context() was not called"
        messages = self.prep_msgs_for_cc_llm([item.model_dump() for item in request.input])
        answer = self.client.chat.completions.create(model=LLM_ENDPOINT, messages=messages)
        text = f"[{self.style}] {answer.choices[0].message.content}"
        return ResponsesAgentResponse(output=[self.create_text_output_item(text, answer.id)])
