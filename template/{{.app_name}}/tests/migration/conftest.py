"""Fixtures of the migration tests: a fake workspace, and six real agents logged with MLflow.

The agents (tests/migration/agents/) are logged once per session with mlflow.pyfunc.log_model,
each with `resources=` and an input example, into a local MLflow tracking store and model
registry (sqlite, in a temporary directory; the migrate command finds it through
MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI). The original models' answers to their input
examples are recorded here too, from mlflow.pyfunc.load_model(...).predict, in the order the
tests then ask the migrated apps: predict, then predict_stream.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from mlflow.models import resources as r
from mlflow.pyfunc import PythonModel

from tests.fake_workspace import ENV_KEYS_TO_REMOVE, FakeWorkspace
from tests.migration.agents import LLM_ENDPOINT

AGENTS_DIR = Path(__file__).parent / "agents"
MULTIFILE_DIR = AGENTS_DIR / "multifile"
REGISTERED_PREFIX = "main.migration_tests"


@dataclass(frozen=True)
class AgentSpec:
    key: str
    log_kwargs: Callable[[], dict[str, Any]]
    example: dict[str, Any]
    resources: list[Any]
    requirements: list[str]
    streams: bool  # has its own predict_stream()
    # Requests after the input example, for agents whose later answers depend on earlier ones.
    follow_ups: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class LoggedAgent:
    spec: AgentSpec
    model_uri: str  # models:/<registered name>/<version>
    registered_name: str
    version: str
    model_dir: Path  # the model downloaded, as a user would before `migrate --model-dir`
    mlmodel: dict[str, Any]
    expected: dict[str, Any]  # the original's predict(input example)
    expected_stream: list[dict[str, Any]]  # then its streamed output items
    expected_follow_ups: list[dict[str, Any]]

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def example(self) -> dict[str, Any]:
        return self.spec.example


def _versions(*packages: str) -> list[str]:
    return [f"{name}=={version(name)}" for name in packages]


def _code(path: Path) -> Callable[[], dict[str, Any]]:
    return lambda: {"python_model": str(path)}


def _multifile() -> dict[str, Any]:
    return {
        "python_model": str(MULTIFILE_DIR / "agent.py"),
        "code_paths": [str(MULTIFILE_DIR / "multifile_helpers")],
        "artifacts": {"greeting": str(MULTIFILE_DIR / "greeting.txt")},
        "model_config": str(MULTIFILE_DIR / "config.yaml"),
    }


def _pickled() -> dict[str, Any]:
    # Imported under its own top-level name (AGENTS_DIR is on sys.path while logging), so the
    # pickle refers to `pickled_support.PickledAgent`, found in the model's code when loaded.
    support = importlib.import_module("pickled_support")
    return {
        "python_model": support.PickledAgent(style="pirate"),
        "code_paths": [str(AGENTS_DIR / "pickled_support.py")],
    }


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


SPECS = [
    AgentSpec(
        "chat",
        _code(AGENTS_DIR / "chat_agent.py"),
        {"input": user("Hello from Model Serving"), "custom_inputs": {"session": "s-1"}},
        [
            r.DatabricksServingEndpoint(LLM_ENDPOINT),
            r.DatabricksFunction("main.tools.lookup_order"),
            r.DatabricksSQLWarehouse("4b9e2f1c7a3d5e60"),
        ],
        _versions("mlflow", "databricks-openai"),
        streams=True,
    ),
    AgentSpec(
        "langgraph",
        _code(AGENTS_DIR / "langgraph_agent.py"),
        {"input": user('What is the weather? Call get_weather with {"city": "Paris"}')},
        [
            r.DatabricksServingEndpoint(LLM_ENDPOINT),
            r.DatabricksVectorSearchIndex("main.docs.weather_index"),
            r.DatabricksUCConnection("weather_api"),
            r.DatabricksFunction("main.tools.forecast", on_behalf_of_user=True),
        ],
        _versions("mlflow", "databricks-langchain", "langchain", "langgraph"),
        streams=True,
    ),
    AgentSpec(
        "predict_only",
        _code(AGENTS_DIR / "predict_only_agent.py"),
        {"input": user("Summarize our sales"), "custom_inputs": {"region": "emea"}},
        [
            r.DatabricksServingEndpoint(LLM_ENDPOINT),
            r.DatabricksGenieSpace("01ef2b3c4d5e6f708192a3b4c5d6e7f8"),
            r.DatabricksTable("main.sales.orders"),
        ],
        _versions("mlflow", "databricks-openai"),
        streams=False,
    ),
    AgentSpec(
        "stateful",
        _code(AGENTS_DIR / "stateful_agent.py"),
        {"input": user("Remember the colour purple"), "custom_inputs": {"thread_id": "thread-7"}},
        [r.DatabricksServingEndpoint(LLM_ENDPOINT), r.DatabricksLakebase("agent-memory")],
        _versions("mlflow", "databricks-openai"),
        streams=True,
        follow_ups=[
            {
                "input": user("Which colour?"),
                "context": {"conversation_id": "conv-1", "user_id": "ada@example.com"},
            },
            {
                "input": user("And again?"),
                "context": {"conversation_id": "conv-1", "user_id": "ada@example.com"},
            },
            {"input": user("Back to the first thread"), "custom_inputs": {"thread_id": "thread-7"}},
        ],
    ),
    AgentSpec(
        "multifile",
        _multifile,
        {"input": user("Who are you?")},
        [
            r.DatabricksServingEndpoint(LLM_ENDPOINT),
            r.DatabricksServingEndpoint("migrate-test-embeddings"),
            r.DatabricksApp("mcp-weather-tools"),
        ],
        _versions("mlflow", "databricks-openai"),
        streams=False,
    ),
    AgentSpec(
        "pickled",
        _pickled,
        {"input": user("Ping")},
        [
            r.DatabricksServingEndpoint(LLM_ENDPOINT),
            r.DatabricksTable("main.sales.customers", on_behalf_of_user=True),
        ],
        _versions("mlflow", "databricks-openai", "cloudpickle"),
        streams=False,
    ),
]
AGENT_KEYS = [spec.key for spec in SPECS]


class EchoModel(PythonModel):
    """A plain pyfunc model, not a ResponsesAgent."""

    def predict(self, context: Any, model_input: list[str], params: Any = None) -> list[str]:
        return model_input


@pytest.fixture(scope="session")
def migration_fake() -> Iterator[FakeWorkspace]:
    """A fake workspace of the migration tests' own (they configure serving endpoints)."""
    with FakeWorkspace() as fake:
        yield fake


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('migration-mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def logged_agents(
    migration_fake: FakeWorkspace, mlflow_store: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, LoggedAgent]:
    """The six agents, logged, registered, downloaded, and asked their input example."""
    root = tmp_path_factory.mktemp("migration-models")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pytest.MonkeyPatch.context() as patch:
        for key in ENV_KEYS_TO_REMOVE:
            patch.delenv(key, raising=False)
        for key, value in migration_fake.env().items():
            patch.setenv(key, value)
        patch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
        patch.setenv("MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING", "false")
        # Else MLflow copies this project's pyproject.toml and uv.lock into every model.
        patch.setenv("MLFLOW_LOG_UV_FILES", "false")
        # Logging runs each agent once: its own modules must import, as on a developer's
        # machine (the multi-file agent's helpers, the pickled agent's class).
        patch.syspath_prepend(str(AGENTS_DIR))
        patch.syspath_prepend(str(MULTIFILE_DIR))
        mlflow.set_tracking_uri(mlflow_store)
        mlflow.set_registry_uri(mlflow_store)
        try:
            experiment = mlflow.create_experiment(
                "migration-tests", artifact_location=(root / "artifacts").as_uri()
            )
            return {spec.key: _log(spec, experiment, root) for spec in SPECS}
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])


def _log(spec: AgentSpec, experiment: str, root: Path) -> LoggedAgent:
    name = f"{REGISTERED_PREFIX}.{spec.key}"
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name=spec.key,
            **spec.log_kwargs(),
            resources=spec.resources,
            input_example=spec.example,
            pip_requirements=spec.requirements,
            registered_model_name=name,
        )
    model_version = str(info.registered_model_version)
    model_uri = f"models:/{name}/{model_version}"
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(root / "downloads" / spec.key)
        )
    )
    original = mlflow.pyfunc.load_model(model_uri)
    expected = original.predict(spec.example)
    if spec.streams:
        streamed = list(original.predict_stream(spec.example))
        expected_stream = [e["item"] for e in streamed if e["type"] == "response.output_item.done"]
    else:
        expected_stream = list(original.predict(spec.example)["output"])
    follow_ups = [original.predict(request) for request in spec.follow_ups]
    return LoggedAgent(
        spec=spec,
        model_uri=model_uri,
        registered_name=name,
        version=model_version,
        model_dir=model_dir,
        mlmodel=yaml.safe_load((model_dir / "MLmodel").read_text()),
        expected=expected,
        expected_stream=expected_stream,
        expected_follow_ups=follow_ups,
    )


@pytest.fixture(scope="session")
def plain_pyfunc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow model that is not a ResponsesAgent."""
    path = tmp_path_factory.mktemp("plain-pyfunc") / "model"
    mlflow.pyfunc.save_model(path=str(path), python_model=EchoModel(), pip_requirements=["mlflow"])
    return path
