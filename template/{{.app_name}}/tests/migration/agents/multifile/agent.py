"""A multi-file agent: helper code (code_paths), an artifact and a ModelConfig YAML.

Logged from this file with code_paths=[multifile_helpers], artifacts={"greeting": ...} and
model_config=config.yaml. Every path resolves from the model's own files: the artifact through
context.artifacts, the helpers' data file through their module, the configuration through
ModelConfig (which MLflow fills in with the logged configuration).
"""

from pathlib import Path

import mlflow
from databricks_openai import DatabricksOpenAI
from mlflow.models import ModelConfig
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse
from multifile_helpers.prompts import system_prompt

config = ModelConfig(development_config=str(Path(__file__).with_name("config.yaml")))


class MultiFileAgent(ResponsesAgent):
    def load_context(self, context: object) -> None:
        artifacts = context.artifacts  # type: ignore[attr-defined]
        self.greeting = Path(artifacts["greeting"]).read_text(encoding="utf-8").strip()
        self.client = DatabricksOpenAI()

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        messages = [{"role": "system", "content": system_prompt(config.get("persona"))}]
        messages += self.prep_msgs_for_cc_llm([item.model_dump() for item in request.input])
        answer = self.client.chat.completions.create(
            model=config.get("llm_endpoint"), messages=messages
        )
        text = f"{self.greeting} {answer.choices[0].message.content} {config.get('signature')}"
        return ResponsesAgentResponse(
            output=[self.create_text_output_item(text, answer.id)],
            custom_outputs={"persona": system_prompt(config.get("persona"))},
        )


mlflow.models.set_model(MultiFileAgent())
