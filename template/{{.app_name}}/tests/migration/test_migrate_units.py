"""The migration's pure parts on their own: resource mapping, databricks.yml edits, served
entity choice, dependency merging, the generated entry point and the --rewrite transform."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest
import yaml
from ruff.__main__ import find_ruff_bin

from agent_cli.migration.bundle import update_bundle
from agent_cli.migration.dependencies import plan_dependencies, specifiers_agree
from agent_cli.migration.entrypoint import render_adapter
from agent_cli.migration.errors import MigrationError
from agent_cli.migration.mlmodel import read_model
from agent_cli.migration.resources import (
    UnknownResourceType,
    map_resources,
    unique_name,
)
from agent_cli.migration.rewrite import RewriteRefused, rewrite
from agent_cli.migration.source import ServedEntity, choose_served_entity, served_entities
from agent_cli.migration.verify import compare
from tests.migration.support import bundle_schema_errors
from tests.support import PROJECT_ROOT

ALL_TYPES = {
    "api_version": "1",
    "databricks": {
        "serving_endpoint": [{"name": "llm"}, {"name": "embeddings"}],
        "lakebase": [{"name": "memory"}],
        "vector_search_index": [{"name": "main.docs.index"}],
        "function": [{"name": "main.tools.lookup"}],
        "table": [{"name": "main.sales.orders"}],
        "uc_connection": [{"name": "github"}],
        "sql_warehouse": [{"name": "abc123"}],
        "genie_space": [{"name": "01f0space"}],
        "app": [{"name": "mcp-tools"}],
    },
}


def entry(mapping: object, kind: str, field: str, value: str) -> dict:
    [found] = [e for e in mapping.entries if e.get(kind, {}).get(field) == value]  # type: ignore[attr-defined]
    return found


def test_every_resource_type_maps_to_its_app_resource_and_permission() -> None:
    mapping = map_resources(ALL_TYPES, None)
    assert entry(mapping, "serving_endpoint", "name", "embeddings")["serving_endpoint"] == {
        "name": "embeddings",
        "permission": "CAN_QUERY",
    }
    assert entry(mapping, "database", "instance_name", "memory")["database"] == {
        "instance_name": "memory",
        "database_name": "databricks_postgres",
        "permission": "CAN_CONNECT_AND_CREATE",
    }
    securables = {
        e["uc_securable"]["securable_full_name"]: e["uc_securable"]
        for e in mapping.entries
        if "uc_securable" in e
    }
    assert securables == {
        "main.docs.index": {
            "securable_full_name": "main.docs.index",
            "securable_type": "TABLE",
            "permission": "SELECT",
        },
        "main.tools.lookup": {
            "securable_full_name": "main.tools.lookup",
            "securable_type": "FUNCTION",
            "permission": "EXECUTE",
        },
        "main.sales.orders": {
            "securable_full_name": "main.sales.orders",
            "securable_type": "TABLE",
            "permission": "SELECT",
        },
        "github": {
            "securable_full_name": "github",
            "securable_type": "CONNECTION",
            "permission": "USE_CONNECTION",
        },
    }
    assert entry(mapping, "sql_warehouse", "id", "abc123")["sql_warehouse"]["permission"] == (
        "CAN_USE"
    )
    genie = entry(mapping, "genie_space", "space_id", "01f0space")["genie_space"]
    assert genie == {"name": "01f0space", "space_id": "01f0space", "permission": "CAN_RUN"}
    assert entry(mapping, "app", "name", "mcp-tools")["app"] == {
        "name": "mcp-tools",
        "permission": "CAN_USE",
    }
    assert len(mapping.entries) == 10 and mapping.user_api_scopes == []
    names = [e["name"] for e in mapping.entries]
    assert len(set(names)) == len(names)
    assert all(len(n) <= 30 and n not in ("experiment", "serving-endpoint") for n in names)


def test_a_bundle_with_every_resource_type_validates_against_the_bundle_schema() -> None:
    change = update_bundle(
        (PROJECT_ROOT / "databricks.yml").read_text(),
        map_resources(
            {
                **ALL_TYPES,
                "databricks": {
                    **ALL_TYPES["databricks"],
                    "table": [
                        {"name": "main.sales.orders"},
                        {"name": "main.hr.people", "on_behalf_of_user": True},
                    ],
                },
            },
            {"user_auth_policy": {"api_scopes": ["dashboards.genie"]}},
        ),
    )
    document = yaml.safe_load(change.text)
    assert bundle_schema_errors(document) == []
    [app] = document["resources"]["apps"].values()
    assert app["user_api_scopes"] == ["dashboards.genie", "sql"]


def test_on_behalf_of_user_resources_become_user_api_scopes() -> None:
    mapping = map_resources(
        {
            "api_version": "1",
            "databricks": {
                "serving_endpoint": [{"name": "llm"}],
                "function": [{"name": "main.tools.a", "on_behalf_of_user": True}],
                "genie_space": [{"name": "space", "on_behalf_of_user": True}],
                "vector_search_index": [{"name": "main.docs.i", "on_behalf_of_user": True}],
            },
        },
        None,
    )
    assert [e["name"] for e in mapping.entries] == ["serving-endpoint-llm"]
    assert mapping.user_api_scopes == [
        "dashboards.genie",
        "sql",
        "vectorsearch.vector-search-indexes",
    ]
    assert any("x-forwarded-access-token" in note for note in mapping.notes)


def test_auth_policy_system_resources_and_user_scopes() -> None:
    mapping = map_resources(
        None,
        {
            "system_auth_policy": {
                "resources": {"api_version": "1", "databricks": {"table": [{"name": "m.s.t"}]}}
            },
            "user_auth_policy": {"api_scopes": ["sql.statement-execution", "model-serving"]},
        },
    )
    [table] = mapping.entries
    assert table["uc_securable"]["securable_full_name"] == "m.s.t"
    assert "auth_policy" in table["description"]
    assert mapping.user_api_scopes == ["model-serving", "sql"]
    assert any("`model-serving`" in note for note in mapping.notes)


def test_unknown_resource_types_and_malformed_sections() -> None:
    unknown = {"api_version": "1", "databricks": {"quantum_computer": [{"name": "q"}]}}
    with pytest.raises(UnknownResourceType, match="quantum_computer 'q'"):
        map_resources(unknown, None)
    skipped = map_resources(unknown, None, skip_unknown=True)
    assert skipped.entries == [] and "quantum_computer `q`" in skipped.notes[0]
    with pytest.raises(ValueError, match="api_version '2'"):
        map_resources({"api_version": "2", "databricks": {}}, None)
    with pytest.raises(ValueError, match="has no name"):
        map_resources({"api_version": "1", "databricks": {"table": [{"nom": "x"}]}}, None)


def test_resource_names_are_short_unique_and_stable() -> None:
    used: set[str] = set()
    long = "table-main.a_very_long_schema_name.an_even_longer_table_name"
    first = unique_name(long, used)
    assert len(first) <= 30 and first == unique_name(long, set())
    assert unique_name(long, used) != first


def test_bundle_edits_are_structural_idempotent_and_reversible() -> None:
    original = (PROJECT_ROOT / "databricks.yml").read_text()
    mapping = map_resources(ALL_TYPES, None)
    first = update_bundle(original, mapping)
    record = {
        "resources": first.resources,
        "user_api_scopes": first.user_api_scopes,
        "llm_variable": first.llm_variable,
    }
    assert update_bundle(first.text, mapping, record).text == first.text  # a re-run
    # Comments and everything migrate does not manage come back unchanged.
    kept = [line for line in original.splitlines() if line.lstrip().startswith("#")]
    assert all(line in first.text.splitlines() for line in kept)
    yours = first.text.replace(
        "      resources:\n",
        "      resources:\n        - name: mine\n"
        "          secret: {scope: s, key: k, permission: READ}\n",
        1,
    )
    # A model without resources: migrate's resources go, yours and the template's stay.
    empty = update_bundle(yours, map_resources(None, None), record)
    document = yaml.safe_load(empty.text)
    [app] = document["resources"]["apps"].values()
    assert [r["name"] for r in app["resources"]] == ["mine", "experiment", "serving-endpoint"]
    assert (
        document["variables"]["serving_endpoint"]["default"]
        == (yaml.safe_load(original)["variables"]["serving_endpoint"]["default"])
    )
    assert "user_api_scopes" not in app


def test_a_resource_name_that_is_already_yours_is_a_clash() -> None:
    original = (PROJECT_ROOT / "databricks.yml").read_text()
    clashing = original.replace(
        "      resources:\n",
        "      resources:\n        - name: app-mcp-tools\n"
        "          app: {name: other, permission: CAN_USE}\n",
        1,
    )
    with pytest.raises(MigrationError, match="app-mcp-tools"):
        update_bundle(clashing, map_resources(ALL_TYPES, None))


def served(name: str, traffic: int, kind: str = "registered model") -> ServedEntity:
    return ServedEntity(name, "main.agents.a", "3", traffic, kind, {})


def test_the_served_entity_with_all_the_traffic_is_chosen() -> None:
    chosen, why = choose_served_entity("e", [served("old", 0), served("new", 100)])
    assert chosen.name == "new" and "100% of the traffic" in why


def test_split_traffic_is_explained() -> None:
    chosen, why = choose_served_entity("e", [served("a", 20), served("b", 80)])
    assert chosen.name == "b"
    assert "largest share of the split traffic (a 20%, b 80%)" in why and "--served-entity" in why
    chosen, why = choose_served_entity("e", [served("a", 20), served("b", 80)], wanted="a")
    assert chosen.name == "a" and "--served-entity" in why
    with pytest.raises(MigrationError, match="evenly"):
        choose_served_entity("e", [served("a", 50), served("b", 50)])
    with pytest.raises(MigrationError, match="no served entity 'c'"):
        choose_served_entity("e", [served("a", 100)], wanted="c")
    with pytest.raises(MigrationError, match="foundation model"):
        choose_served_entity("e", [served("llm", 100, "foundation model")])


def test_served_entities_read_from_an_endpoint_spec() -> None:
    spec = {
        "config": {
            "served_entities": [
                {"name": "a", "entity_name": "m", "entity_version": "1"},
                {"name": "llm", "foundation_model": {"name": "x"}},
            ],
            "traffic_config": {
                "routes": [
                    {"served_model_name": "a", "traffic_percentage": 90},
                    {"served_model_name": "llm", "traffic_percentage": 10},
                ]
            },
        }
    }
    assert [(e.name, e.traffic, e.kind) for e in served_entities(spec)] == [
        ("a", 90, "registered model"),
        ("llm", 10, "foundation model"),
    ]
    single = {"config": {"served_entities": [{"name": "a", "entity_name": "m"}]}}
    assert served_entities(single)[0].traffic == 100


PYPROJECT = """
[project]
name = "x"
dependencies = ["mlflow>=3.9,<4", "fastapi>=0.115", "httpx[http2]>=0.27"]
"""


def test_requirements_merge_keeps_agreeing_pins_and_reports_conflicts() -> None:
    plan = plan_dependencies(
        PYPROJECT,
        [
            "mlflow==3.17.2",
            "databricks-openai==0.18.0",
            "fastapi<0.100",
            "httpx[socks]==0.28.1",
            "-r other.txt",
            "./wheels/private-1.0-py3-none-any.whl",
            "mlflow==3.17.2",
        ],
    )
    assert plan.kept == [
        ("mlflow>=3.9,<4", "mlflow==3.17.2"),
        ("httpx[http2]>=0.27", "httpx[socks]==0.28.1"),
    ]
    assert plan.add == ["databricks-openai==0.18.0", "httpx[http2,socks]>=0.27"]
    assert [c.describe() for c in plan.conflicts] == [
        "fastapi: the project has `fastapi>=0.115`, the model `fastapi<0.100`"
    ]
    assert plan.unsupported == ["-r other.txt", "./wheels/private-1.0-py3-none-any.whl"]
    taken = plan_dependencies(PYPROJECT, ["fastapi<0.100"], on_conflict="model")
    assert taken.add == ["fastapi<0.100"] and "took the model's" in taken.resolved[0]
    again = plan_dependencies(
        PYPROJECT.replace('"fastapi>=0.115"', '"fastapi>=0.115", "cloudpickle==3.1.2"'),
        ["cloudpickle==3.1.2"],
        previously_added=["cloudpickle==3.1.2"],
    )
    assert again.add == [] and again.added == ["cloudpickle==3.1.2"] and again.kept == []


@pytest.mark.parametrize(
    ("ours", "theirs", "agree"),
    [
        (">=3.9,<4", "==3.17.2", True),
        (">=3.9,<4", "==2.22.0", False),
        (">=3.9,<4", ">=3.0", True),
        (">=3.9,<4", "<3.5", False),
        ("", "==1.0", True),
        ("~=1.4", ">=1.4.2", True),
    ],
)
def test_specifiers_agree(ours: str, theirs: str, agree: bool) -> None:
    from packaging.specifiers import SpecifierSet

    assert specifiers_agree(SpecifierSet(ours), SpecifierSet(theirs)) is agree


def ruff_clean(source: str, tmp_path: Path) -> None:
    path = PROJECT_ROOT / "agent_server" / "agent.py"  # ruff reads this project's settings
    for args in (["check", "--no-fix"], ["format", "--check"]):
        result = subprocess.run(
            [find_ruff_bin(), *args, "--stdin-filename", str(path), "-"],
            input=source,
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("pickled", [False, True], ids=["code", "pickle"])
def test_the_adapter_is_deterministic_and_ruff_clean(
    is_async: bool, pickled: bool, tmp_path: Path
) -> None:
    source = render_adapter(is_async=is_async, pickled=pickled)
    assert source == render_adapter(is_async=is_async, pickled=pickled)
    ruff_clean(source, tmp_path)
    tree = ast.parse(source)
    handlers = {
        n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    for name in ("invoke_handler", "stream_handler"):
        assert isinstance(handlers[name], ast.AsyncFunctionDef) is is_async
    assert f"PICKLED = {pickled}" in source
    # The async variant hands the original (sync) agent to the server's worker threads.
    assert ("predict_in_thread = async_invoke(predict)" in source) is is_async


def write_model(tmp_path: Path, source: str, **pyfunc: object) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "agent.py").write_text(source)
    mlmodel = {
        "flavors": {
            "python_function": {
                "loader_module": "mlflow.pyfunc.loaders.code_model",
                "model_code_path": "/somewhere/agent.py",
                **pyfunc,
            }
        },
        "metadata": {"task": "agent/v1/responses"},
        "mlflow_version": "3.17.2",
    }
    (model / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return model


SAFE_AGENT = '''
import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse

GREETING = "hello"


class Agent(ResponsesAgent):
    """An agent."""

    def __init__(self):
        self.counts = {}
        self.suffix = "!"

    def predict(self, request):
        text = self.answer(request.input[-1].content)
        self.counts[text] = self.counts.get(text, 0) + 1
        return ResponsesAgentResponse(output=[self.create_text_output_item(text, "id-1")])

    def answer(self, question):
        # Keeps its comments.
        return f"{GREETING} {question}{self.suffix}"


AGENT = Agent()
mlflow.models.set_model(AGENT)
'''


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_rewrite_turns_the_class_into_module_level_functions(
    is_async: bool, tmp_path: Path
) -> None:
    from agent_cli.migration.planner import format_python

    source = format_python(
        rewrite(read_model(write_model(tmp_path, SAFE_AGENT)), is_async=is_async), PROJECT_ROOT
    )
    ruff_clean(source, tmp_path)
    assert "class Agent" not in source and "set_model" not in source and "self" not in source
    assert 'counts = {}\nsuffix = "!"' in source
    assert "def predict(request):" in source and "def answer(question):" in source
    assert "ResponsesAgent.create_text_output_item(text" in source
    assert "# Keeps its comments." in source
    assert "def finished_items(request: ResponsesAgentRequest)" in source
    # Run it: the module's functions answer as the class did. Its @invoke/@stream register
    # process-wide, so the registrations are put back afterwards.
    from mlflow.genai.agent_server import server as agent_server_module
    from mlflow.types.responses import ResponsesAgentRequest

    saved = agent_server_module._invoke_function, agent_server_module._stream_function
    agent_server_module._invoke_function = agent_server_module._stream_function = None
    try:
        namespace: dict[str, object] = {}
        exec(compile(source, "agent.py", "exec"), namespace)  # the code we just generated
    finally:
        agent_server_module._invoke_function, agent_server_module._stream_function = saved
    request = ResponsesAgentRequest(input=[{"role": "user", "content": "you"}])
    response = namespace["predict"](request)  # type: ignore[operator]
    assert response.output[0].content[0]["text"] == "hello you!"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (('self.suffix = "!"', 'self.suffix = "!"\n        print(self)'), "does more than assign"),
        (("self.counts[text] =", "self.suffix = text\n        self.counts[text] ="), "reassigns"),
        (('return f"{GREETING}', 'helper(self)\n        return f"{GREETING}'), "uses `self` other"),
        (("def __init__(self):", "def __init__(self, name='x'):"), "__init__ takes arguments"),
        (("AGENT = Agent()", "AGENT = Agent()\nprint(AGENT)"), "uses AGENT outside set_model"),
        (('GREETING = "hello"', 'GREETING = "hello"\ncounts = 1'), "`counts` would collide"),
        (("def answer(self, question):", "def answer(self, question):\n        super()"), "super"),
    ],
)
def test_rewrite_refuses_what_it_cannot_do_safely(
    change: tuple[str, str], reason: str, tmp_path: Path
) -> None:
    code = SAFE_AGENT.replace(*change)
    assert code != SAFE_AGENT
    with pytest.raises(RewriteRefused, match=reason):
        rewrite(read_model(write_model(tmp_path, code)), is_async=False)


def test_rewrite_refuses_models_that_need_mlflows_loader(tmp_path: Path) -> None:
    model = write_model(tmp_path, SAFE_AGENT, config={"a": 1}, code="code")
    (model / "code").mkdir()
    with pytest.raises(RewriteRefused) as refused:
        rewrite(read_model(model), is_async=False)
    assert any("code_paths" in r for r in refused.value.reasons)
    assert any("ModelConfig" in r for r in refused.value.reasons)


def test_verification_compares_items_without_their_ids() -> None:
    item = {"type": "message", "id": "a", "role": "assistant", "content": [{"text": "hi"}]}
    same = {**item, "id": "b"}
    other = {**item, "content": [{"text": "bye"}]}
    passed = compare(
        {"output": [item], "custom_outputs": {"k": 1}},
        [item],
        {"output": [same], "custom_outputs": {"k": 1}},
        [same],
    )
    assert passed.passed and passed.details[0].endswith("the same 1 item(s) as the original")
    failed = compare({"output": [item]}, [item], {"output": [same]}, [other])
    assert failed.status == "failed"
    assert failed.details[1].startswith("streamed output items differ")
    assert not compare({"output": []}, [], {"output": [], "custom_outputs": {"x": 1}}, []).passed
