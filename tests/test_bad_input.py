"""Bad inputs are rejected before anything is written, with an error naming the property and
the rule it breaks."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import regex
from conftest import load_template_schema, render, run_bundle_init, using_real_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPERTIES: dict[str, Any] = load_template_schema()["properties"]


def pattern_rule(name: str) -> str:
    return str(PROPERTIES[name]["pattern_match_failure_message"])


def enum_rule(name: str) -> str:
    return f"to be one of [{' '.join(PROPERTIES[name]['enum'])}]"


@dataclass(frozen=True)
class BadInput:
    id: str
    config: dict[str, Any]
    prop: str
    rule: str
    stand_in_only: bool = False


def pattern_case(case_id: str, prop: str, value: str) -> BadInput:
    assert not regex.fullmatch(PROPERTIES[prop]["pattern"], value), f"{value!r} is legal"
    return BadInput(case_id, {prop: value}, prop, pattern_rule(prop))


BAD_INPUTS = [
    pattern_case("app_name-uppercase", "app_name", "MyAgent"),
    pattern_case("app_name-1-char", "app_name", "a"),
    pattern_case("app_name-27-chars", "app_name", "a" * 27),
    pattern_case("app_name-leading-hyphen", "app_name", "-agent"),
    pattern_case("app_name-trailing-hyphen", "app_name", "agent-"),
    pattern_case("app_name-leading-digit", "app_name", "1agent"),
    pattern_case("app_name-underscore", "app_name", "my_agent"),
    pattern_case("app_name-space", "app_name", "my agent"),
    pattern_case("app_name-quote", "app_name", 'my"agent'),
    pattern_case("app_name-newline", "app_name", "my\nagent"),
    pattern_case("app_name-trailing-newline", "app_name", "agent\n"),
    pattern_case("app_name-template-action", "app_name", "{{.x}}"),
    pattern_case("app_name-yaml-mapping", "app_name", "a: b"),
    pattern_case("app_name-yaml-comment", "app_name", "#x"),
    pattern_case("app_name-yaml-flow-sequence", "app_name", "[x]"),
    pattern_case("app_name-empty", "app_name", ""),
    pattern_case("serving_endpoint-space", "serving_endpoint", "my endpoint"),
    pattern_case("serving_endpoint-slash", "serving_endpoint", "a/b"),
    pattern_case("serving_endpoint-dot", "serving_endpoint", "llm.v2"),
    pattern_case("serving_endpoint-leading-hyphen", "serving_endpoint", "-llm"),
    pattern_case("serving_endpoint-64-chars", "serving_endpoint", "e" * 64),
    pattern_case("serving_endpoint-newline", "serving_endpoint", "llm\nx"),
    pattern_case("serving_endpoint-quote", "serving_endpoint", 'llm"x'),
    pattern_case("serving_endpoint-empty", "serving_endpoint", ""),
    pattern_case("subagents-semicolons", "subagents", "a;b"),
    pattern_case("subagents-empty-entry", "subagents", "a,,b"),
    pattern_case("subagents-trailing-comma", "subagents", "a, b,"),
    pattern_case("subagents-app-uppercase", "subagents", "apps/MyApp"),
    pattern_case("subagents-app-1-char", "subagents", "apps/a"),
    pattern_case("subagents-app-31-chars", "subagents", "apps/" + "a" * 31),
    pattern_case("subagents-app-without-name", "subagents", "apps/"),
    pattern_case("subagents-other-prefix", "subagents", "models/x"),
    pattern_case("subagents-endpoint-61-chars", "subagents", "e" * 61),
    pattern_case("subagents-endpoint-dot", "subagents", "llm.v2"),
    pattern_case("subagents-quote", "subagents", 'a, b"c'),
    pattern_case("subagents-newline", "subagents", "a,\nb"),
    pattern_case("subagents-template-action", "subagents", "{{.x}}"),
    # Workspace resources (issue 4): each pattern, and the prompts that go together.
    pattern_case("genie_space_id-uppercase", "genie_space_id", "01EF0123456789ABCDEF0123456789AB"),
    pattern_case("genie_space_id-short", "genie_space_id", "01ef0123"),
    pattern_case("genie_space_id-url", "genie_space_id", "https://x/genie/rooms/01ef"),
    pattern_case("vector_search_index-two-parts", "vector_search_index", "main.docs"),
    pattern_case("vector_search_index-four-parts", "vector_search_index", "a.b.c.d"),
    pattern_case("vector_search_index-space", "vector_search_index", "main.docs.my index"),
    pattern_case("vector_search_index-quote", "vector_search_index", 'main.docs.x"y'),
    pattern_case("uc_function_schema-one-part", "uc_function_schema", "main"),
    pattern_case("uc_function_schema-four-parts", "uc_function_schema", "a.b.c.d"),
    pattern_case("uc_function_schema-slash", "uc_function_schema", "main/tools"),
    pattern_case("uc_connection-dot", "uc_connection", "my.connection"),
    pattern_case("uc_connection-leading-hyphen", "uc_connection", "-github"),
    pattern_case("uc_connection-256-chars", "uc_connection", "c" * 256),
    pattern_case(
        "sql_warehouse_id-path", "sql_warehouse_id", "/sql/1.0/warehouses/0123456789abcdef"
    ),
    pattern_case("sql_warehouse_id-15-chars", "sql_warehouse_id", "0123456789abcde"),
    pattern_case("secret_scope-space", "secret_scope", "my scope"),
    pattern_case("secret_scope-leading-dot", "secret_scope", ".scope"),
    pattern_case("secret_key-slash", "secret_key", "a/b"),
    pattern_case("lakebase_instance-underscore", "lakebase_instance", "agent_memory"),
    pattern_case("lakebase_instance-64-chars", "lakebase_instance", "m" * 64),
    pattern_case("embedding_endpoint-space", "embedding_endpoint", "gte large"),
    pattern_case("embedding_endpoint-slash", "embedding_endpoint", "a/b"),
    pattern_case("embedding_endpoint-leading-hyphen", "embedding_endpoint", "-gte"),
    pattern_case("embedding_endpoint-64-chars", "embedding_endpoint", "e" * 64),
    pattern_case("embedding_endpoint-empty", "embedding_endpoint", ""),
    BadInput("memory-not-in-enum", {"memory": "long-term"}, "memory", enum_rule("memory")),
    BadInput(
        "long-term-memory-with-openai-agents",
        {
            "agent_framework": "openai-agents",
            "memory": "short-and-long-term",
            "lakebase_project": "agent-memory",
        },
        "memory",
        "the OpenAI Agents SDK keeps conversations (sessions) on Lakebase but has no long-term "
        "store",
    ),
    pattern_case("lakebase_project-uppercase", "lakebase_project", "Agent-Memory"),
    pattern_case("lakebase_project-path", "lakebase_project", "projects/agent-memory"),
    pattern_case("lakebase_branch-underscore", "lakebase_branch", "my_branch"),
    BadInput(
        "lakebase_kind-not-in-enum",
        {"memory": "short-term", "lakebase_kind": "serverless"},
        "lakebase_kind",
        enum_rule("lakebase_kind"),
    ),
    BadInput(
        "memory-without-lakebase_instance",
        {"memory": "short-term", "lakebase_kind": "provisioned"},
        "lakebase_instance",
        'lakebase_instance is required when memory is "short-term" and lakebase_kind is '
        '"provisioned"',
    ),
    BadInput(
        "memory-without-lakebase_project",
        {"memory": "short-and-long-term"},
        "lakebase_project",
        'lakebase_project is required when memory is "short-and-long-term" and lakebase_kind '
        'is "autoscaling"',
    ),
    BadInput(
        "memory-without-lakebase_branch",
        {"memory": "short-term", "lakebase_project": "agent-memory", "lakebase_branch": ""},
        "lakebase_branch",
        'lakebase_branch is required when memory is "short-term" and lakebase_kind is '
        '"autoscaling"',
    ),
    BadInput(
        "secret_scope-without-secret_key",
        {"secret_scope": "agent-secrets"},
        "secret_key",
        "secret_key is required when secret_scope is set",
    ),
    BadInput(
        "secret_key-without-secret_scope",
        {"secret_key": "api_key"},
        "secret_scope",
        "secret_scope is required when secret_key is set",
    ),
    BadInput(
        "agent_framework-not-in-enum",
        {"agent_framework": "crewai"},
        "agent_framework",
        enum_rule("agent_framework"),
    ),
    BadInput("async-true-string", {"async": "true"}, "async", enum_rule("async")),
    BadInput("async-capitalized", {"async": "Yes"}, "async", enum_rule("async")),
    BadInput(
        "unknown-key",
        {"app_nmae": "my-agent"},
        "app_nmae",
        "unknown property",
        stand_in_only=True,
    ),
    BadInput("app_name-number", {"app_name": 42}, "app_name", "expected type string"),
    BadInput("app_name-null", {"app_name": None}, "app_name", "expected type string"),
    # The CLI checks enum membership before types, so a boolean is reported as not in the enum.
    BadInput("async-boolean", {"async": True}, "async", enum_rule("async")),
    BadInput(
        "serving_endpoint-list", {"serving_endpoint": ["a"]}, "serving_endpoint", "expected type"
    ),
]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root` with its bytes and permission bits."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_bad_inputs_cover_the_required_cases() -> None:
    assert len(BAD_INPUTS) >= 24
    assert len({case.id for case in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda case: case.id)
def test_bad_input_is_rejected(tmp_path: Path, case: BadInput) -> None:
    if case.stand_in_only and using_real_cli():
        pytest.skip(
            "the real CLI silently ignores unknown config keys; only the stand-in rejects them"
        )
    out = tmp_path / "out"
    out.mkdir()
    result = render(case.config, out)
    assert result.returncode != 0, f"accepted {case.config!r}:\n{result.stderr}"
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error_lines, f"no `Error:` line on stderr:\n{result.stderr}"
    error = "\n".join(error_lines)
    assert case.prop in error, f"the error does not name {case.prop}: {error}"
    assert case.rule in error, f"the error does not state the rule {case.rule!r}: {error}"
    assert list(out.iterdir()) == [], f"files written despite the error: {list(out.rglob('*'))}"


@pytest.mark.parametrize("prop", ["app_name", "serving_endpoint"])
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_value_outside_the_pattern_is_rejected(
    tmp_path_factory: pytest.TempPathFactory, prop: str, data: st.DataObject
) -> None:
    pattern = PROPERTIES[prop]["pattern"]
    value = data.draw(st.text(max_size=70).filter(lambda s: not regex.fullmatch(pattern, s)))
    out = tmp_path_factory.mktemp("bad") / "out"
    out.mkdir()
    result = render({prop: value}, out)
    assert result.returncode != 0, f"accepted {prop}={value!r}"
    assert f"invalid value for {prop}: " in result.stderr
    assert pattern_rule(prop) in result.stderr
    assert list(out.iterdir()) == []


def test_rendering_twice_into_the_same_dir_fails_and_keeps_the_first_output(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    config = {"app_name": "twice"}
    first = render(config, out)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    assert before, "the first render wrote nothing"

    second = render(config, out)
    assert second.returncode != 0, "the second render into the same directory succeeded"
    assert "already exist" in second.stderr, second.stderr
    assert snapshot(out) == before, "the failed second render changed the first output"


def test_config_file_must_be_a_json_object(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(["app_name", "my-agent"]), encoding="utf-8")
    result = run_bundle_init(config_file, out)
    assert result.returncode != 0
    assert "failed to load config from file" in result.stderr, result.stderr
    assert list(out.iterdir()) == []
