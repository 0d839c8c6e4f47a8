"""Six real agents migrated with `uv run migrate`, each booted and compared with the original.

Each agent is migrated from its model URI (models:/, in the local registry) and from its
downloaded directory, and one from a serving endpoint. The app migrated from the model URI is
booted from another working directory and must answer the input example, non-streaming and
streaming, as mlflow.pyfunc.load_model(...).predict did; the one migrated from the directory
must be the same app, byte for byte. The endpoint migration runs migrate's own verification,
which boots the app and compares it with the original. Booting is what takes time here, so each
migrated app boots once."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ruff.__main__ import find_ruff_bin

from tests.fake_workspace import FakeWorkspace
from tests.fake_workspace.serving_api import agent_endpoint, served_model
from tests.migration.conftest import AGENT_KEYS, LoggedAgent
from tests.migration.support import (
    bundle_app,
    bundle_schema_errors,
    copy_project,
    done_items,
    invoke,
    migrate_env,
    migrated_app,
    run_migrate,
    stream_events,
    without_ids,
)

# Every MLmodel resource type and the app resource it must become (checked against the bundle
# schema by test_migrated_bundle_validates_against_the_bundle_schema).
EXPECTED_RESOURCES: dict[str, Callable[[str], tuple[str, dict[str, str]]]] = {
    "serving_endpoint": lambda n: ("serving_endpoint", {"name": n, "permission": "CAN_QUERY"}),
    "function": lambda n: (
        "uc_securable",
        {"securable_full_name": n, "securable_type": "FUNCTION", "permission": "EXECUTE"},
    ),
    "table": lambda n: (
        "uc_securable",
        {"securable_full_name": n, "securable_type": "TABLE", "permission": "SELECT"},
    ),
    "vector_search_index": lambda n: (
        "uc_securable",
        {"securable_full_name": n, "securable_type": "TABLE", "permission": "SELECT"},
    ),
    "uc_connection": lambda n: (
        "uc_securable",
        {"securable_full_name": n, "securable_type": "CONNECTION", "permission": "USE_CONNECTION"},
    ),
    "sql_warehouse": lambda n: ("sql_warehouse", {"id": n, "permission": "CAN_USE"}),
    "genie_space": lambda n: (
        "genie_space",
        {"space_id": n, "name": n, "permission": "CAN_RUN"},
    ),
    "lakebase": lambda n: (
        "database",
        {
            "instance_name": n,
            "database_name": "databricks_postgres",
            "permission": "CAN_CONNECT_AND_CREATE",
        },
    ),
    "app": lambda n: ("app", {"name": n, "permission": "CAN_USE"}),
}
OBO_SCOPES = {"function": "sql", "table": "sql", "serving_endpoint": "serving.serving-endpoints"}
# The files that make the migrated app, besides the packaged model.
APP_FILES = ("agent_server/agent.py", "databricks.yml", "pyproject.toml")


class Migrations:
    """Migrated copies of the project, made once per test module and shared by its tests."""

    def __init__(self, factory: pytest.TempPathFactory, fake: FakeWorkspace, store: str) -> None:
        self.factory = factory
        self.fake = fake
        self.store = store
        self.done: dict[tuple[str, ...], tuple[Path, subprocess.CompletedProcess[str]]] = {}

    def migrate(self, name: str, *args: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
        key = (name, *args)
        if key not in self.done:
            project = copy_project(self.factory.mktemp(name) / "project")
            # A directory needs no MLflow store: without one, migrate's verification also runs
            # as on a machine with no tracking configured.
            store = None if "--model-dir" in args else self.store
            result = run_migrate(project, *args, env=migrate_env(self.fake, store))
            assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
            self.done[key] = project, result
        return self.done[key]

    def from_uri(self, agent: LoggedAgent, *extra: str) -> Path:
        args = ("--model-dir", str(agent.model_dir), "--frozen", "--skip-verify", *extra)
        return self.migrate(f"{agent.key}-uri", *args)[0]


@pytest.fixture(scope="module")
def migrations(
    tmp_path_factory: pytest.TempPathFactory, migration_fake: FakeWorkspace, mlflow_store: str
) -> Migrations:
    return Migrations(tmp_path_factory, migration_fake, mlflow_store)


@pytest.fixture
def client() -> Any:
    with httpx.Client(timeout=120) as http:
        yield http


def ruff(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_ruff_bin(), *args], cwd=project, capture_output=True, text=True, timeout=120
    )


def message_text(items: list[dict[str, Any]]) -> str:
    return "".join(
        part["text"]
        for item in items
        if item.get("type") == "message"
        for part in item["content"]
        if part.get("type") == "output_text"
    )


def assert_serves_like_the_original(
    client: httpx.Client, url: str, agent: LoggedAgent
) -> list[Any]:
    """The input example, non-streaming then streaming, against the original's answers."""
    answer = invoke(client, url, agent.example)
    assert without_ids(answer["output"]) == without_ids(agent.expected["output"])
    assert answer.get("custom_outputs") == agent.expected.get("custom_outputs")
    events = stream_events(client, url, agent.example)
    streamed = done_items(events)
    assert without_ids(streamed) == without_ids(agent.expected_stream)
    return events


@pytest.mark.parametrize("key", AGENT_KEYS)
def test_migrated_from_model_uri_serves_like_the_original(
    key: str,
    logged_agents: dict[str, LoggedAgent],
    migrations: Migrations,
    migration_fake: FakeWorkspace,
    client: httpx.Client,
    tmp_path: Path,
) -> None:
    agent = logged_agents[key]
    project = migrations.from_uri(agent)
    elsewhere = tmp_path / "another-working-directory"
    elsewhere.mkdir()
    with migrated_app(project, migration_fake, tmp_path / "server.log", cwd=elsewhere) as url:
        events = assert_serves_like_the_original(client, url, agent)
        follow_ups = [invoke(client, url, request) for request in agent.spec.follow_ups]
    assert [without_ids(a) for a in follow_ups] == [
        without_ids(e) for e in agent.expected_follow_ups
    ]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    if key == "chat":  # the agent that streams text: its deltas make up the final text
        assert len(deltas) > 1 and "".join(deltas) == message_text(done_items(events))
    if not agent.spec.streams:
        # Finished items only, the last one carrying predict()'s custom_outputs.
        assert all(e["type"] == "response.output_item.done" for e in events)
        assert events[-1].get("custom_outputs") == agent.expected.get("custom_outputs")
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # nothing written there


def test_stateful_agent_keeps_threads_and_conversation_ids(
    logged_agents: dict[str, LoggedAgent],
) -> None:
    """What the stateful agent's originals answered: threads by custom_inputs.thread_id and by
    context.conversation_id, the user from context.user_id (the migrated app is held to the
    same answers above)."""
    agent = logged_agents["stateful"]
    outputs = [agent.expected, *agent.expected_follow_ups]
    assert [o["custom_outputs"] for o in outputs] == [
        {"thread_id": "thread-7", "user_id": None, "turn": 1},
        {"thread_id": "conv-1", "user_id": "ada@example.com", "turn": 1},
        {"thread_id": "conv-1", "user_id": "ada@example.com", "turn": 2},
        {"thread_id": "thread-7", "user_id": None, "turn": 3},
    ]


@pytest.mark.parametrize("key", AGENT_KEYS)
def test_migrated_files(
    key: str, logged_agents: dict[str, LoggedAgent], migrations: Migrations, tmp_path: Path
) -> None:
    agent = logged_agents[key]
    project = migrations.from_uri(agent)
    checked = ruff(project, "check", "agent_server/agent.py")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = ruff(project, "format", "--check", "agent_server/agent.py")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr

    # The copied model: code, artifacts and configuration inside the package.
    packaged = project / "agent_server/migrated/model"
    assert (packaged / "MLmodel").read_bytes() == (agent.model_dir / "MLmodel").read_bytes()
    for relative in ("code", "artifacts"):
        source = agent.model_dir / relative
        if source.exists():
            assert sorted(p.name for p in (packaged / relative).rglob("*")) == sorted(
                p.name for p in source.rglob("*")
            )
    assert not (project / "tests/test_migration_scaffold.py").exists()

    # The model's requirements are in pyproject.toml (the project's own pins where they agree).
    pyproject = (project / "pyproject.toml").read_text()
    for requirement in agent.spec.requirements:
        name = requirement.split("==")[0]
        assert f'"{requirement}"' in pyproject or name == "mlflow", requirement
    assert '"mlflow>=' in pyproject


@pytest.mark.parametrize("key", AGENT_KEYS)
def test_every_declared_resource_is_mapped_with_its_permission(
    key: str, logged_agents: dict[str, LoggedAgent], migrations: Migrations
) -> None:
    agent = logged_agents[key]
    project = migrations.from_uri(agent)
    app = bundle_app(project)
    variables = yaml.safe_load((project / "databricks.yml").read_text())["variables"]
    resources = app["resources"]
    declared = agent.mlmodel["resources"]["databricks"]
    scopes = set()
    first_endpoint = next(e["name"] for e in declared["serving_endpoint"])
    # The first serving endpoint takes the template's LLM resource, through its variable.
    assert variables["serving_endpoint"]["default"] == first_endpoint
    [llm] = [r for r in resources if r["name"] == "serving-endpoint"]
    assert llm["serving_endpoint"]["permission"] == "CAN_QUERY"
    for resource_type, entries in declared.items():
        for entry in entries:
            if entry.get("on_behalf_of_user"):
                scopes.add(OBO_SCOPES[resource_type])
                continue
            if resource_type == "serving_endpoint" and entry["name"] == first_endpoint:
                continue
            kind, spec = EXPECTED_RESOURCES[resource_type](entry["name"])
            matching = [r for r in resources if r.get(kind) == spec]
            assert len(matching) == 1, (resource_type, entry, resources)
    assert set(app.get("user_api_scopes") or []) == scopes
    assert len(resources) == 2 + sum(
        1
        for resource_type, entries in declared.items()
        for entry in entries
        if not entry.get("on_behalf_of_user")
        and not (resource_type == "serving_endpoint" and entry["name"] == first_endpoint)
    )


@pytest.mark.parametrize("key", AGENT_KEYS)
def test_migrated_bundle_validates_against_the_bundle_schema(
    key: str, logged_agents: dict[str, LoggedAgent], migrations: Migrations
) -> None:
    project = migrations.from_uri(logged_agents[key])
    document = yaml.safe_load((project / "databricks.yml").read_text())
    assert bundle_schema_errors(document) == []


@pytest.mark.parametrize("key", AGENT_KEYS)
def test_migrated_from_model_dir_is_the_same_app(
    key: str, logged_agents: dict[str, LoggedAgent], migrations: Migrations
) -> None:
    """From the downloaded directory: byte for byte the app that served like the original."""
    agent = logged_agents[key]
    from_uri = migrations.from_uri(agent)
    # migrate's own verification for one of them (the endpoint test has another): it boots the
    # app, which takes a while, and the others are the same bytes as an app booted above.
    verify = () if key == "pickled" else ("--skip-verify",)
    project, result = migrations.migrate(
        f"{key}-dir", "--model-dir", str(agent.model_dir), "--frozen", *verify
    )
    for relative in APP_FILES:
        assert (project / relative).read_bytes() == (from_uri / relative).read_bytes(), relative
    assert _tree(project / "agent_server/migrated/model") == _tree(
        from_uri / "agent_server/migrated/model"
    )
    assert _tree(project / "original_mlflow_model") == _tree(agent.model_dir)
    assert "uv run quickstart" in result.stdout and "uv run start-server" in result.stdout
    if not verify:
        assert "verification: passed" in result.stdout, result.stdout + result.stderr
    report = (project / "MIGRATION.md").read_text()
    assert f"MLflow model directory `{agent.model_dir}`" in report
    assert "uv run quickstart" in report and "uv run deploy" in report


def test_migrated_from_a_serving_endpoint(
    logged_agents: dict[str, LoggedAgent], migrations: Migrations, migration_fake: FakeWorkspace
) -> None:
    """The endpoint's served entity with all the traffic is downloaded, migrated and verified:
    migrate's own step 5 boots the app and compares it with the original on the input example."""
    agent = logged_agents["stateful"]
    migration_fake.configure(
        serving_endpoints={
            "stateful-agent": agent_endpoint(
                "stateful-agent",
                [
                    served_model(agent.registered_name, "99", traffic=0, name="candidate"),
                    served_model(
                        agent.registered_name,
                        agent.version,
                        traffic=100,
                        name="live",
                        environment_vars={
                            "SEARCH_API_KEY": "{{secrets/agents/search-key}}",
                            "AGENT_MODE": "production",
                        },
                    ),
                ],
            )
        }
    )
    try:
        project, result = migrations.migrate(
            "stateful-endpoint", "--endpoint", "stateful-agent", "--frozen"
        )
    finally:
        migration_fake.configure(serving_endpoints=None)
    assert "verification: passed" in result.stdout, result.stdout + result.stderr
    report = (project / "MIGRATION.md").read_text()
    assert "- non-streaming output: the same 1 item(s) as the original" in report
    assert "- streamed output items: the same 1 item(s) as the original" in report
    assert "served entity live, which takes 100% of the traffic" in report
    # What the endpoint set in the environment needs a person: a secret resource, an env entry.
    assert "`SEARCH_API_KEY` from secret `agents/search-key`: add a `secret` app resource" in report
    assert "The endpoint set `AGENT_MODE`: add it to the env" in report
    assert agent.model_uri in report
    from_uri = migrations.from_uri(agent)
    assert (project / "agent_server/agent.py").read_bytes() == (
        from_uri / "agent_server/agent.py"
    ).read_bytes()


def _opposite_async(project: Path) -> str:
    source = (project / "agent_server/agent.py").read_text()
    return "no" if "async def invoke_handler" in source else "yes"


@pytest.mark.parametrize("rewrite", [False, True], ids=["adapter", "rewrite"])
def test_other_async_choice_and_rewrite_serve_like_the_original(
    rewrite: bool,
    logged_agents: dict[str, LoggedAgent],
    migrations: Migrations,
    migration_fake: FakeWorkspace,
    client: httpx.Client,
    tmp_path: Path,
) -> None:
    """--async with the other choice than the project's, and --rewrite (Path A)."""
    agent = logged_agents["chat"]
    default = migrations.from_uri(agent)
    choice = _opposite_async(default) if not rewrite else "yes"
    extra = ("--async", choice, *(["--rewrite"] if rewrite else []))
    name = f"chat-{'rewrite' if rewrite else 'async'}"
    args = ("--model-dir", str(agent.model_dir), "--frozen", "--skip-verify", *extra)
    project = migrations.migrate(name, *args)[0]
    source = (project / "agent_server/agent.py").read_text()
    assert ("async def invoke_handler" in source) == (choice == "yes")
    if rewrite:
        assert "class ChatAgent" not in source and "self." not in source
        assert "def predict_stream(" in source and "client = DatabricksOpenAI()" in source
        assert not (project / "agent_server/migrated/model").exists()
    for args in (("check",), ("format", "--check")):
        checked = ruff(project, *args, "agent_server/agent.py")
        assert checked.returncode == 0, checked.stdout + checked.stderr
    with migrated_app(project, migration_fake, tmp_path / "server.log") as url:
        events = assert_serves_like_the_original(client, url, agent)
    assert any(e["type"] == "response.output_text.delta" for e in events)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
