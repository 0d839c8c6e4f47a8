"""The generated server entry (agent_server/start_server.py) and its use of mlflow's internals.

Each variant is rendered and read: start_server.py builds its app in `create_app()` without
import-order tricks, mounts the chat UI exactly when the project has one, and only
runtime/mlflow_internals.py touches mlflow's private API.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import render

VARIANTS = {
    "langgraph-sync": {"agent_framework": "langgraph", "async": "no"},
    "langgraph-async-no-chat-ui": {"agent_framework": "langgraph", "async": "yes", "chat_ui": "no"},
    "openai-agents": {"agent_framework": "openai-agents", "async": "yes"},
    "model-serving-migration": {"agent_framework": "model-serving-migration"},
    "langgraph-memory": {
        "agent_framework": "langgraph",
        "memory": "short-term",
        "lakebase_project": "p",
        "lakebase_branch": "production",
    },
}
# mlflow's private names: underscored attributes of mlflow modules, the agent server's handler
# slots, and the lifespan that its AgentServer sets on the app.
PRIVATE_MLFLOW = re.compile(
    r"mlflow(?:\.\w+)*\._\w+|_invoke_function|_stream_function|lifespan_context"
)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = {"app_name": "my-agent", **VARIANTS[request.param]}
    out = tmp_path_factory.mktemp(request.param)
    result = render(config, out / "out")
    assert result.returncode == 0, result.stderr
    return out / "out" / "my-agent"


def test_errors_name_only_what_the_project_has(project: Path) -> None:
    errors = (project / "agent_server" / "runtime" / "errors.py").read_text(encoding="utf-8")
    has_memory = (project / "agent_server" / "runtime" / "memory.py").exists()
    migration = (project / "agent_cli" / "migration").exists()
    assert ("NotMigratedError" in errors) == migration
    assert ("psycopg" in errors) == has_memory
    assert ("Lakebase" in errors) == has_memory


def test_start_server_has_an_app_factory_and_no_import_tricks(project: Path) -> None:
    source = (project / "agent_server" / "start_server.py").read_text(encoding="utf-8")
    assert "def create_app()" in source
    assert "factory=True" in source
    assert "noqa" not in source
    assert "find_spec" not in source


def test_the_chat_ui_is_mounted_only_when_the_project_has_one(project: Path) -> None:
    source = (project / "agent_server" / "start_server.py").read_text(encoding="utf-8")
    has_chat_ui = (project / "agent_server" / "runtime" / "chat_ui.py").exists()
    assert ("mount_chat_ui(app)" in source) == has_chat_ui


def test_private_mlflow_names_only_in_mlflow_internals(project: Path) -> None:
    internals = project / "agent_server" / "runtime" / "mlflow_internals.py"
    assert "def check_mlflow(" in internals.read_text(encoding="utf-8")
    found = {
        str(path.relative_to(project)): sorted(set(PRIVATE_MLFLOW.findall(path.read_text())))
        for path in (project / "agent_server").rglob("*.py")
        if path != internals and PRIVATE_MLFLOW.search(path.read_text(encoding="utf-8"))
    }
    assert found == {}
