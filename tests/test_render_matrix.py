"""Render every prompt combination and check the generated project.

The combinations come from the template schema (see conftest.combination_matrix); each is
rendered once per session by the `rendered_matrix` fixture.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import bundle_validation as bv
import pytest
import regex
from conftest import (
    COMBINATIONS,
    REJECTED_COMBINATIONS,
    REPO_ROOT,
    RenderedCombination,
    load_template_schema,
    render,
    skip_condition_holds,
)
from databricks.bundles.apps import App
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from ruff import find_ruff_bin

TEMPLATE_SCHEMA = load_template_schema()
PROPERTIES: dict[str, Any] = TEMPLATE_SCHEMA["properties"]
PROJECT_TEMPLATE_DIR = REPO_ROOT / "template" / "{{.app_name}}"
APP_CONFIG_DEFINE = REPO_ROOT / "library" / "app_config.tmpl"

MAX_APP_NAME = 30  # Databricks App names are at most 30 characters.
APP_NAME_CHARS = re.compile(r"^[a-z0-9-]+$")

# Files that only some combinations get (decided in template/__preamble.tmpl), by path inside
# the generated project. Every other file under template/{{.app_name}}/ is in every project.
CONDITIONAL_FILES: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    **{
        name: lambda c: c["agent_framework"] == "langgraph"
        for name in (
            "agent_server/runtime/langgraph_responses.py",
            "agent_server/runtime/langgraph_build.py",
            "agent_server/runtime/langgraph_mcp_tools.py",
            "agent_server/runtime/langgraph_tracing.py",
            "agent_server/runtime/once.py",
            "tests/test_once.py",
        )
    },
    **{
        name: lambda c: c["agent_framework"] == "openai-agents"
        for name in (
            "agent_server/runtime/agents_sdk_responses.py",
            "agent_server/runtime/agents_sdk_runner.py",
            "agent_server/runtime/agents_sdk_mcp_tools.py",
        )
    },
    "tests/test_agent.py": lambda c: c["agent_framework"] != "model-serving-migration",
    "tests/test_fake_workspace_clients.py": lambda c: (
        c["agent_framework"] != "model-serving-migration"
    ),
    "tests/test_faults.py": lambda c: c["agent_framework"] != "model-serving-migration",
    "tests/test_shutdown.py": lambda c: c["agent_framework"] != "model-serving-migration",
    "tests/test_tracing_databricks.py": lambda c: c["agent_framework"] != "model-serving-migration",
    "tests/test_migration_scaffold.py": lambda c: c["agent_framework"] == "model-serving-migration",
    # Tools of the managed MCP servers (every agent) and the memory (LangGraph, Agents SDK).
    "tests/test_tools.py": lambda c: c["agent_framework"] != "model-serving-migration",
    "agent_server/runtime/memory.py": lambda c: (
        c["agent_framework"] == "langgraph" and c["memory"] != "none"
    ),
    "agent_server/runtime/agents_sdk_memory.py": lambda c: (
        c["agent_framework"] == "openai-agents" and c["memory"] != "none"
    ),
    **{
        name: lambda c: (
            c["agent_framework"] in ("langgraph", "openai-agents") and c["memory"] != "none"
        )
        for name in (
            "agent_server/runtime/lakebase.py",
            "agent_server/runtime/conversation.py",
            "tests/test_memory.py",
            "tests/postgres.py",
        )
    },
    # `uv run migrate` and its tests: whole folders, only for the migration scaffold.
    **{
        path.relative_to(PROJECT_TEMPLATE_DIR).as_posix().removesuffix(".tmpl"): (
            lambda c: c["agent_framework"] == "model-serving-migration"
        )
        for folder in ("agent_cli/migration", "tests/migration")
        for path in sorted((PROJECT_TEMPLATE_DIR / folder).rglob("*"))
        if path.is_file()
    },
    # Sub-agents (prompt subagents): their module and tests, when the list is not empty.
    "agent_server/runtime/subagents.py": lambda c: bool(c["subagents"].strip(" ,")),
    "tests/test_subagents.py": lambda c: bool(c["subagents"].strip(" ,")),
    # The agent's Databricks tools as the signed-in user (prompt on_behalf_of_user, with a tool).
    "agent_server/runtime/user_auth.py": lambda c: (
        c["on_behalf_of_user"] == "yes"
        and c["agent_framework"] != "model-serving-migration"
        and any(
            c[name].strip(" ,")
            for name in (
                "genie_space_id",
                "vector_search_index",
                "uc_function_schema",
                "uc_connection",
                "subagents",
            )
        )
    ),
    # The chat page (prompt chat_ui): its modules, its static files and its tests.
    "agent_server/runtime/chat_ui.py": lambda c: c["chat_ui"] == "yes",
    "agent_server/runtime/feedback.py": lambda c: c["chat_ui"] == "yes",
    "tests/test_chat_ui.py": lambda c: c["chat_ui"] == "yes",
    **{
        path.relative_to(PROJECT_TEMPLATE_DIR).as_posix().removesuffix(".tmpl"): (
            lambda c: c["chat_ui"] == "yes"
        )
        for path in sorted((PROJECT_TEMPLATE_DIR / "agent_server/runtime/static").rglob("*"))
        if path.is_file()
    },
    # The GitHub Actions workflows (prompt ci_workflow).
    **{
        path.relative_to(PROJECT_TEMPLATE_DIR).as_posix().removesuffix(".tmpl"): (
            lambda c: c["ci_workflow"] == "yes"
        )
        for path in sorted((PROJECT_TEMPLATE_DIR / ".github").rglob("*"))
        if path.is_file()
    },
}

# Go text/template actions, for files where a bare `{{`/`}}` is legitimate (Python dict
# literals such as `{"a": {"b": 1}}` end in `}}`).
GO_TEMPLATE_ACTION = re.compile(
    r"\{\{-?\s*(?:[.$]|/\*|(?:if|else|end|range|with|template|define|block|skip|not|eq|ne|"
    r"and|or|len|index|print|printf|fail|map|pair|regexp|bundle_uuid)\b)"
)
# GitHub Actions expressions, `${{ vars.X }}`: legitimate in the generated workflow files.
GITHUB_EXPRESSION = re.compile(r"\$\{\{ [^{}]* \}\}")


def full_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` completed with the schema defaults of the prompts it leaves out (not the
    hidden derived ones, whose defaults are templates)."""
    values = {
        name: prop["default"]
        for name, prop in PROPERTIES.items()
        if prop.get("skip_prompt_if") != {} and "default" in prop
    }
    values.update(config)
    return values


def project_files(project: Path) -> list[Path]:
    return sorted(p for p in project.rglob("*") if p.is_file())


def relative_names(project: Path) -> set[str]:
    return {p.relative_to(project).as_posix() for p in project_files(project)}


def expected_files(config: Mapping[str, Any]) -> set[str]:
    """The generated project's file set for `config`, from the template tree."""
    expected = set()
    for source in PROJECT_TEMPLATE_DIR.rglob("*"):
        if not source.is_file():
            continue
        name = source.relative_to(PROJECT_TEMPLATE_DIR).as_posix()
        if name.endswith(".tmpl"):
            name = name[: -len(".tmpl")]
        assert "{{" not in name, f"templated path {name!r}: teach expected_files() to render it"
        condition = CONDITIONAL_FILES.get(name)
        if condition is None or condition(full_config(config)):
            expected.add(name)
    return expected


def ruff(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This project's ruff, run inside the generated project so it uses that pyproject."""
    return subprocess.run(
        [find_ruff_bin(), *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def only_app(bundle: bv.LoadedBundle) -> tuple[str, App]:
    assert len(bundle.apps) == 1, f"expected one app, got {sorted(bundle.apps)}"
    return next(iter(bundle.apps.items()))


def bundle_document(case: RenderedCombination) -> dict[str, Any]:
    document = bv.load_yaml(case.project / "databricks.yml")
    assert isinstance(document, dict), "databricks.yml is not a mapping"
    return document


def app_yaml(case: RenderedCombination) -> dict[str, Any]:
    document = bv.load_yaml(case.project / "app.yaml")
    assert isinstance(document, dict), "app.yaml is not a mapping"
    return document


def bundle_only_env_names() -> list[str]:
    """Env names that library/app_config.tmpl emits only inside `{{- if .bundle}}`."""
    text = APP_CONFIG_DEFINE.read_text(encoding="utf-8")
    blocks = re.findall(r"\{\{-?\s*if \.bundle\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}", text, re.S)
    assert blocks, f"{APP_CONFIG_DEFINE} has no `{{{{if .bundle}}}}` block"
    return [name for block in blocks for name in re.findall(r"- name: (\w+)", block)]


def bundle_app_env(app: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((app.get("config") or {}).get("env") or [])


# --- the template tree ---------------------------------------------------------------------


def test_matrix_covers_every_prompt() -> None:
    """Every visible enum prompt is varied, and the matrix is their full product (an enum that
    its `skip_prompt_if` skips takes its default there) less the combinations the template
    rejects, times the optional texts all empty and all set (see conftest.combination_matrix)."""
    enums = [n for n, p in PROPERTIES.items() if "enum" in p and p.get("skip_prompt_if") != {}]
    optional_texts = 0
    for name, prop in PROPERTIES.items():
        if prop.get("skip_prompt_if") == {}:
            assert all(name not in c for c in COMBINATIONS), f"hidden {name} set in a config"
        elif "enum" in prop:
            assert {c[name] for c in COMBINATIONS} == set(prop["enum"]), name
        elif prop.get("default") == "":
            assert {bool(c[name]) for c in COMBINATIONS} == {False, True}, name
            optional_texts += 1
    expected_rows = set()
    for values in itertools.product(*(PROPERTIES[name]["enum"] for name in enums)):
        row = dict(zip(enums, values, strict=True))
        for name in enums:
            condition = PROPERTIES[name].get("skip_prompt_if")
            if condition and skip_condition_holds(condition, row):
                row[name] = PROPERTIES[name]["default"]
        if not any(
            all(row.get(name) == value for name, value in rejected.items())
            for rejected in REJECTED_COMBINATIONS
        ):
            expected_rows.add(tuple(row.items()))
    assert {tuple((name, c[name]) for name in enums) for c in COMBINATIONS} == expected_rows
    assert len(COMBINATIONS) == len(expected_rows) * (2 if optional_texts else 1)
    assert len({json.dumps(c, sort_keys=True) for c in COMBINATIONS}) == len(COMBINATIONS)


def test_template_tree_has_no_git_ignored_files() -> None:
    """Files git ignores are rendered from a working tree but never committed: a template file
    that is ignored is missing from every clone, and a stray cache is shipped to users."""
    result = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", "template"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"git ls-files failed: {result.stderr}"
    ignored = result.stdout.split()
    assert not ignored, (
        "git-ignored files under template/ (an ignored template file is never committed; a "
        "cache directory is rendered into the project):\n" + "\n".join(ignored)
    )


# --- every combination ---------------------------------------------------------------------


def test_render_succeeds(rendered: RenderedCombination) -> None:
    assert rendered.result.returncode == 0
    assert "Error" not in rendered.result.stderr, rendered.result.stderr
    assert [p.name for p in rendered.out_dir.iterdir()] == [rendered.app_name], (
        "the render wrote outside <output-dir>/<app_name>"
    )


def test_file_set_matches_preamble(rendered: RenderedCombination) -> None:
    names = relative_names(rendered.project)
    framework = rendered.config["agent_framework"]
    if framework == "langgraph":
        assert {"agent_server/runtime/langgraph_responses.py", "tests/test_agent.py"} <= names
        assert "tests/test_migration_scaffold.py" not in names
    elif framework == "openai-agents":
        assert {"agent_server/runtime/agents_sdk_responses.py", "tests/test_agent.py"} <= names
        assert not names & {
            "agent_server/runtime/langgraph_responses.py",
            "tests/test_migration_scaffold.py",
        }
    else:
        assert "tests/test_migration_scaffold.py" in names
        assert not names & {"agent_server/runtime/langgraph_responses.py", "tests/test_agent.py"}
    expected = expected_files(rendered.config)
    assert names == expected, (
        f"missing: {sorted(expected - names)}; unexpected: {sorted(names - expected)}"
    )


def test_no_template_syntax_left(rendered: RenderedCombination) -> None:
    problems = []
    for path in project_files(rendered.project):
        text = path.read_bytes().decode("utf-8", errors="replace")
        name = path.relative_to(rendered.project).as_posix()
        for number, line in enumerate(text.splitlines(), start=1):
            if name.startswith(".github/workflows/"):
                line = GITHUB_EXPRESSION.sub("", line)
            if path.suffix == ".py":
                leftover = GO_TEMPLATE_ACTION.search(line) is not None
            else:
                leftover = "{{" in line or "}}" in line
            if leftover:
                problems.append(f"{name}:{number}: {line.strip()}")
    assert not problems, "leftover template syntax:\n" + "\n".join(problems)


def test_python_passes_ruff_with_project_config(rendered: RenderedCombination) -> None:
    project = rendered.project
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert "ruff" in pyproject.get("tool", {}), "the generated pyproject.toml has no [tool.ruff]"
    sources = [p.relative_to(project).as_posix() for p in project_files(project)]
    python = [name for name in sources if name.endswith(".py")]
    assert python, "no Python files rendered"
    # Explicit paths: ruff checks them even if an exclude or .gitignore would skip them.
    check = ruff(project, "check", "--no-cache", "--output-format", "concise", *python)
    fmt = ruff(project, "format", "--check", "--diff", "--no-cache", *python)
    failures = [
        f"$ ruff {name}\n{run.stdout}{run.stderr}"
        for name, run in (("check", check), ("format --check --diff", fmt))
        if run.returncode != 0
    ]
    assert not failures, "\n".join(failures)


def test_structured_files_parse(rendered: RenderedCombination) -> None:
    parsed = 0
    for path in project_files(rendered.project):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(rendered.project).as_posix()
        try:
            if path.suffix in (".yml", ".yaml"):
                bv.parse_yaml(text)
            elif path.suffix == ".toml":
                tomllib.loads(text)
            elif path.suffix == ".json":
                json.loads(text)
            else:
                continue
        except Exception as exc:  # noqa: BLE001 - report any parser's failure with the file
            pytest.fail(f"{name} does not parse: {exc}")
        parsed += 1
    assert parsed >= 3, "expected at least databricks.yml, app.yaml and pyproject.toml"


def text_problems(name: str, data: bytes) -> Iterator[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield f"{name}: not UTF-8 text ({exc})"
        return
    if not text:
        return  # An empty file (such as an empty __init__.py) is fine.
    if "\r" in text:
        yield f"{name}: has carriage returns"
    if not text.endswith("\n"):
        yield f"{name}: does not end with a newline"
    elif text.endswith("\n\n") or not text.strip():
        yield f"{name}: ends with blank lines"
    lines = text.split("\n")[:-1]
    for number, line in enumerate(lines, start=1):
        if line != line.rstrip():
            yield f"{name}:{number}: trailing whitespace: {line!r}"
        # Python files follow ruff format, which puts two blank lines around top-level defs.
        if not name.endswith(".py") and number > 1 and not line.strip():
            if not lines[number - 2].strip():
                yield f"{name}:{number}: two consecutive blank lines"


def test_text_hygiene(rendered: RenderedCombination) -> None:
    problems = []
    for path in project_files(rendered.project):
        name = path.relative_to(rendered.project).as_posix()
        problems.extend(text_problems(name, path.read_bytes()))
    assert not problems, "\n".join(problems)


# What a project may only mention when it has it: each feature's words, and whether the project
# (its full config) has the feature. A README or docstring that names a framework, option or
# file the project lacks sends its reader looking for something that is not there.
ABSENT_FEATURE_WORDS: dict[str, tuple[re.Pattern[str], Callable[[Mapping[str, Any]], bool]]] = {
    "LangGraph": (
        re.compile(r"LangGraph|langgraph|LangChain|langchain"),
        lambda c: c["agent_framework"] == "langgraph",
    ),
    "Agents SDK": (
        re.compile(r"Agents SDK|openai-agents|openai_agents|agents_sdk"),
        lambda c: c["agent_framework"] == "openai-agents",
    ),
    "migration": (
        re.compile(r"\b[Mm]igrat(?:e|ed|ion|ing)\b|Not[Mm]igrated|not_migrated"),
        lambda c: c["agent_framework"] == "model-serving-migration",
    ),
    "memory": (
        re.compile(r"Lakebase|lakebase|LAKEBASE|checkpointer"),
        lambda c: c["memory"] != "none",
    ),
    "long-term memory": (
        re.compile(r"EMBEDDING_ENDPOINT|embedding_endpoint|pgvector|pgserver|delete_memory"),
        lambda c: c["memory"] == "short-and-long-term",
    ),
    "chat page": (
        re.compile(r"chat page|chat UI|chat_ui", re.IGNORECASE),
        CONDITIONAL_FILES["agent_server/runtime/chat_ui.py"],
    ),
    "sub-agents": (
        re.compile(r"sub-?agent", re.IGNORECASE),
        CONDITIONAL_FILES["agent_server/runtime/subagents.py"],
    ),
    "user auth": (
        re.compile(r"on-behalf-of|on behalf of|user_auth|user_api_scopes", re.IGNORECASE),
        CONDITIONAL_FILES["agent_server/runtime/user_auth.py"],
    ),
    "CI workflow": (
        re.compile(r"\.github/|GitHub Actions|CI workflow"),
        lambda c: c["ci_workflow"] == "yes",
    ),
}

# The fake workspace stands in for a whole Databricks workspace, every service the template can
# use included: its mentions are of the workspace's services, not of the project's options.
WORKSPACE_FAKE = ("tests/fake_workspace/", "tests/test_fake_workspace_resources.py")

# (file, feature) mentions still to remove, in files being reworked at the same time; prune an
# entry once its file no longer has the mention.
ALLOWED_MENTIONS: set[tuple[str, str]] = {
    # The LangGraph agent's memory.
    ("agent_server/runtime/memory.py", "chat page"),
    ("tests/test_memory.py", "chat page"),
    # The migration scaffold (`uv run migrate` moves agents of any framework and option).
    ("pyproject.toml", "LangGraph"),
    ("agent_server/runtime/cancellation.py", "LangGraph"),
    ("README.md", "LangGraph"),
    ("README.md", "memory"),
    ("README.md", "user auth"),
    ("agent_cli/migration/bundle.py", "user auth"),
    ("agent_cli/migration/planner.py", "user auth"),
    ("agent_cli/migration/report.py", "user auth"),
    ("agent_cli/migration/resources.py", "memory"),
    ("agent_cli/migration/resources.py", "user auth"),
    ("tests/migration/agents/langgraph_agent.py", "LangGraph"),
    ("tests/migration/conftest.py", "LangGraph"),
    ("tests/migration/conftest.py", "memory"),
    ("tests/migration/test_migrate_agents.py", "memory"),
    ("tests/migration/test_migrate_agents.py", "user auth"),
    ("tests/migration/test_migrate_inputs.py", "LangGraph"),
    ("tests/migration/test_migrate_inputs.py", "user auth"),
    ("tests/migration/test_migrate_units.py", "memory"),
    ("tests/migration/test_migrate_units.py", "user auth"),
    # Commands and test helpers that handle every framework's and option's case in one file.
    ("agent_cli/project.py", "memory"),
    ("agent_cli/quickstart.py", "memory"),
    ("tests/test_quickstart.py", "memory"),
}


def mentions_of_absent_features(project: Path, config: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(file, feature) for each file of `project` that names a feature `config` lacks."""
    full = full_config(config)
    absent = {
        feature: pattern
        for feature, (pattern, has) in ABSENT_FEATURE_WORDS.items()
        if not has(full)
    }
    found = set()
    for path in project_files(project):
        name = path.relative_to(project).as_posix()
        if name.startswith(WORKSPACE_FAKE):
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        found |= {(name, feature) for feature, pattern in absent.items() if pattern.search(text)}
    return found


def test_no_mention_of_what_the_project_does_not_have(rendered: RenderedCombination) -> None:
    found = mentions_of_absent_features(rendered.project, rendered.config)
    problems = sorted(found - ALLOWED_MENTIONS)
    assert not problems, "mentions of what this project does not have:\n" + "\n".join(
        f"{name}: {feature}" for name, feature in problems
    )


def test_every_allowed_mention_is_still_needed(
    rendered_matrix: dict[str, RenderedCombination],
) -> None:
    """An allow-list entry that no combination needs any more is removed, not kept."""
    found: set[tuple[str, str]] = set()
    for case in rendered_matrix.values():
        if case.result.returncode == 0:
            found |= mentions_of_absent_features(case.project, case.config)
    unused = sorted(ALLOWED_MENTIONS - found)
    assert not unused, "ALLOWED_MENTIONS entries no combination needs: " + ", ".join(
        f"{name}: {feature}" for name, feature in unused
    )


def test_bundle_loads_strictly(rendered: RenderedCombination) -> None:
    document = bundle_document(rendered)
    views = bv.load_bundle_all_targets(document)
    assert set(bv.target_names(document)) == {"dev", "prod"}
    assert {t: (document["targets"][t] or {}).get("mode") for t in ("dev", "prod")} == {
        "dev": "development",
        "prod": "production",
    }
    for view in views.values():
        only_app(view)
        assert view.experiments, f"no experiment in {view.target or 'top level'}"


def test_bundle_matches_json_schema(rendered: RenderedCombination) -> None:
    bv.require_bundle_schema()
    errors = bv.schema_errors(bundle_document(rendered))
    assert not errors, "databricks.yml violates the bundle schema:\n" + "\n".join(errors)


def test_app_yaml_agrees_with_bundle_config(rendered: RenderedCombination) -> None:
    document = bundle_document(rendered)
    bundle_view = bv.load_bundle(document)
    key, _ = only_app(bundle_view)
    bundle_app = bundle_view.resources["apps"][key]
    bundle_config = bundle_app["config"]
    local = app_yaml(rendered)

    assert set(local) == {"command", "env"}, f"app.yaml keys: {sorted(local)}"
    assert local["command"] == bundle_config["command"]

    local_env = [
        {("value_from" if k == "valueFrom" else k): v for k, v in entry.items()}
        for entry in local["env"]
    ]
    bundle_env = bundle_app_env(bundle_app)
    bundle_only = [entry for entry in bundle_env if entry not in local_env]
    assert [entry for entry in bundle_env if entry not in bundle_only] == local_env
    assert [entry["name"] for entry in bundle_only] == bundle_only_env_names()
    assert [entry["name"] for entry in bundle_only] == ["AGENT_GIT_COMMIT"]
    (git_commit,) = bundle_only
    # Passed by `uv run deploy` and the deploy workflow; never ${bundle.git.*}, which has no
    # value outside a git checkout. The default is not empty: an env entry always has a value.
    assert git_commit == {"name": "AGENT_GIT_COMMIT", "value": "${var.git_commit}"}
    assert document["variables"]["git_commit"]["default"] == "none"
    for entry in bundle_only:
        assert bv.is_interpolation(entry.get("value")), f"{entry} is not bundle interpolation"
    for entry in local["env"]:
        assert "value_from" not in entry, f"app.yaml uses value_from instead of valueFrom: {entry}"
        assert "${" not in str(entry.get("value", "")), f"app.yaml cannot interpolate: {entry}"


def test_app_names(rendered: RenderedCombination) -> None:
    views = bv.load_bundle_all_targets(bundle_document(rendered))
    names_by_target: dict[str | None, str] = {}
    for target, view in views.items():
        _, app = only_app(view)
        name = app.name
        assert isinstance(name, str), f"{target}: app name {name!r} must be a literal string"
        assert len(name) <= MAX_APP_NAME, f"{target}: {name!r} is longer than {MAX_APP_NAME}"
        assert APP_NAME_CHARS.match(name), f"{target}: {name!r} is not lowercase/digits/hyphens"
        names_by_target[target] = name
    assert names_by_target[None] == rendered.app_name
    assert names_by_target["dev"] != names_by_target["prod"]


def test_app_resources(rendered: RenderedCombination) -> None:
    document = bundle_document(rendered)
    view = bv.load_bundle(document)
    key, app = only_app(view)
    resources = {r.name: r for r in app.resources}  # type: ignore[union-attr]
    assert len(resources) == len(app.resources), "duplicate app resource names"  # type: ignore[arg-type]
    assert {"experiment", "serving-endpoint"} <= set(resources)

    experiment = resources["experiment"].experiment
    assert experiment is not None, "the `experiment` resource is not an experiment"
    reference = view.resources["apps"][key]["resources"]
    (experiment_entry,) = [r for r in reference if r["name"] == "experiment"]
    experiment_id = experiment_entry["experiment"]["experiment_id"]
    match = re.fullmatch(r"\$\{resources\.experiments\.(\w+)\.id\}", experiment_id)
    assert match and match.group(1) in view.experiments, (
        f"experiment_id {experiment_id!r} does not name a declared experiment"
    )

    endpoint = resources["serving-endpoint"].serving_endpoint
    assert endpoint is not None, "the `serving-endpoint` resource is not a serving endpoint"
    assert endpoint.permission.value == "CAN_QUERY"  # type: ignore[union-attr]

    declared = set(resources)
    bundle_env = bundle_app_env(view.resources["apps"][key])
    for entry in bundle_env + app_yaml(rendered)["env"]:
        source = entry.get("value_from", entry.get("valueFrom"))
        if source is not None:
            assert source in declared, f"{entry['name']} reads undeclared app resource {source!r}"

    # The memory's Lakebase follows lakebase_kind: a `postgres` resource on the Autoscaling
    # branch, whose endpoint the app reads, or a provisioned instance's `database` resource.
    config = rendered.config
    lakebase = resources.get("lakebase")
    assert (lakebase is not None) == (config["memory"] != "none")
    if lakebase is not None:
        (entry,) = [r for r in reference if r["name"] == "lakebase"]
        env = {e["name"]: e for e in bundle_env}
        if config["lakebase_kind"] == "autoscaling":
            branch_id = config.get("lakebase_branch", PROPERTIES["lakebase_branch"]["default"])
            branch = f"projects/{config['lakebase_project']}/branches/{branch_id}"
            assert entry["postgres"] == {
                "branch": branch,
                "database": f"{branch}/databases/databricks-postgres",
                "permission": "CAN_CONNECT_AND_CREATE",
            }
            assert env["LAKEBASE_ENDPOINT"].get("value_from") == "lakebase"
            assert "LAKEBASE_INSTANCE" not in env
        else:
            assert entry["database"]["instance_name"] == config["lakebase_instance"]
            assert entry["database"]["permission"] == "CAN_CONNECT_AND_CREATE"
            assert env["LAKEBASE_INSTANCE"]["value"] == config["lakebase_instance"]
            assert "LAKEBASE_ENDPOINT" not in env

    # Long-term memory searches by meaning with an embeddings endpoint of its own resource.
    embedding = resources.get("embedding-endpoint")
    assert (embedding is not None) == (config["memory"] == "short-and-long-term")
    app_env = {e["name"]: e for e in bundle_env + app_yaml(rendered)["env"]}
    assert ("EMBEDDING_ENDPOINT" in app_env) == (embedding is not None)
    if embedding is not None:
        (entry,) = [r for r in reference if r["name"] == "embedding-endpoint"]
        name = config.get("embedding_endpoint", PROPERTIES["embedding_endpoint"]["default"])
        assert entry["serving_endpoint"] == {"name": name, "permission": "CAN_QUERY"}
        for env_entry in bundle_env + app_yaml(rendered)["env"]:
            if env_entry["name"] == "EMBEDDING_ENDPOINT":
                source = env_entry.get("value_from", env_entry.get("valueFrom"))
                assert source == "embedding-endpoint", env_entry


def fake_identities(case: RenderedCombination) -> dict[str, bv.Identity]:
    """The SCIM `Me` answers of the project's fake workspace: a person and a service principal
    (the generated CI signs in as one), read from tests/fake_workspace/core.py."""
    tree = ast.parse((case.project / "tests" / "fake_workspace" / "core.py").read_text("utf-8"))
    found: dict[str, bv.Identity] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("FAKE_USER", "FAKE_SERVICE_PRINCIPAL"):
                found[name] = bv.Identity.from_me(ast.literal_eval(node.value))
    assert set(found) == {"FAKE_USER", "FAKE_SERVICE_PRINCIPAL"}, sorted(found)
    assert not found["FAKE_USER"].is_service_principal
    assert found["FAKE_SERVICE_PRINCIPAL"].is_service_principal
    return found


def test_bundle_deploys_as_person_and_as_service_principal(rendered: RenderedCombination) -> None:
    """Every target deploys from a fresh `bundle init` (no git) both for a person and for the
    service principal of the generated CI: principal kinds, production mode, references."""
    document = bundle_document(rendered)
    problems = [
        f"{target} as {who}: {problem}"
        for who, identity in fake_identities(rendered).items()
        for target in bv.target_names(document)
        for problem in bv.deploy_errors(document, target, identity)
    ]
    assert not problems, "\n".join(problems)


def test_experiment_grant_survives_bundle_permissions(rendered: RenderedCombination) -> None:
    """The app's service principal is on the experiment's own permissions, so permissions the
    owner adds to the bundle or a target later cannot drop its CAN_EDIT (databricks/cli issue
    4309, bundle/apps/validate.go)."""
    document = bundle_document(rendered)
    view = bv.load_bundle(document)
    key, _ = only_app(view)
    (experiment_key,) = view.resources["experiments"]
    grants = view.resources["experiments"][experiment_key].get("permissions") or []
    assert {
        "level": "CAN_EDIT",
        "service_principal_name": f"${{resources.apps.{key}.service_principal_client_id}}",
    } in grants, grants
    team = [{"level": "CAN_MANAGE", "group_name": "agent-team"}]
    with_team = {**document, "permissions": team}
    person = fake_identities(rendered)["FAKE_USER"]
    for target in bv.target_names(document):
        assert bv.deploy_errors(with_team, target, person) == []


# --- specific inputs -----------------------------------------------------------------------


def render_project(tmp_path: Path, config: Mapping[str, Any]) -> Path:
    out = tmp_path / "out"
    result = render(config, out)
    assert result.returncode == 0, result.stderr
    project = out / str(full_config(config)["app_name"])
    assert project.is_dir()
    return project


def assert_values_appear_exactly(project: Path, config: Mapping[str, Any]) -> None:
    values = full_config(config)
    app_name = values["app_name"]
    endpoint = values["serving_endpoint"]
    bundle_key = app_name.replace("-", "_")

    document = bv.load_yaml(project / "databricks.yml")
    assert document["bundle"]["name"] == app_name
    assert document["variables"]["serving_endpoint"]["default"] == endpoint
    assert list(document["resources"]["apps"]) == [bundle_key]
    assert document["resources"]["apps"][bundle_key]["name"] == app_name
    assert document["targets"]["dev"]["resources"]["apps"][bundle_key]["name"] == f"dev-{app_name}"
    assert list(document["resources"]["experiments"]) == [f"{bundle_key}_experiment"]

    env_lines = (project / ".env.example").read_text(encoding="utf-8").splitlines()
    assert f"SERVING_ENDPOINT={endpoint}" in env_lines

    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == app_name


@pytest.mark.parametrize("framework", PROPERTIES["agent_framework"]["enum"])
def test_non_default_values_render_exactly(tmp_path: Path, framework: str) -> None:
    config = {
        "app_name": "x9-agent",
        "agent_framework": framework,
        "serving_endpoint": "my-llm_endpoint-2",
    }
    project = render_project(tmp_path, config)
    assert_values_appear_exactly(project, config)


def test_longest_app_name_gives_30_char_dev_name(tmp_path: Path) -> None:
    app_name = "a" + "b1-" * 8 + "z"
    assert len(app_name) == 26 and regex.fullmatch(PROPERTIES["app_name"]["pattern"], app_name)
    project = render_project(tmp_path, {"app_name": app_name})
    views = bv.load_bundle_all_targets(bv.load_yaml(project / "databricks.yml"))
    dev_name = only_app(views["dev"])[1].name
    assert dev_name == f"dev-{app_name}"
    assert len(dev_name) == MAX_APP_NAME
    assert only_app(views["prod"])[1].name == app_name


def pattern_strategy(name: str) -> st.SearchStrategy[str]:
    return st.from_regex(PROPERTIES[name]["pattern"], fullmatch=True)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(app_name=pattern_strategy("app_name"), endpoint=pattern_strategy("serving_endpoint"))
# Legal values that a YAML reader takes for a null, a boolean or a number unless quoted.
@example(app_name="null", endpoint="123")
@example(app_name="true", endpoint="1e3")
@example(app_name="no", endpoint="null")
@example(app_name="off", endpoint="0x1F")
@example(app_name="yes", endpoint="007")
@example(app_name="on", endpoint="True")
def test_any_legal_value_renders_exactly(
    tmp_path_factory: pytest.TempPathFactory, app_name: str, endpoint: str
) -> None:
    """Every value the schema accepts ends up in the files exactly as given: a YAML reader
    sees the same string (not a boolean, number or null)."""
    config = {"app_name": app_name, "serving_endpoint": endpoint}
    project = render_project(tmp_path_factory.mktemp("any"), config)
    assert_values_appear_exactly(project, config)


# --- the checks themselves -----------------------------------------------------------------

MINIMAL_BUNDLE: dict[str, Any] = {
    "bundle": {"name": "demo"},
    "resources": {
        "apps": {
            "demo": {
                "name": "demo",
                "source_code_path": "./",
                "config": {"command": ["uv", "run", "x"], "env": [{"name": "A", "value": "1"}]},
                "resources": [
                    {
                        "name": "serving-endpoint",
                        "serving_endpoint": {"name": "${var.x}", "permission": "CAN_QUERY"},
                    }
                ],
            }
        },
        "experiments": {"demo_experiment": {"name": "/Users/me/demo"}},
    },
    "targets": {"dev": {"resources": {"apps": {"demo": {"name": "dev-demo"}}}}},
}


def test_strict_loading_names_unknown_fields_and_enum_values() -> None:
    views = bv.load_bundle_all_targets(MINIMAL_BUNDLE)
    assert [view.apps["demo"].name for view in views.values()] == ["demo", "dev-demo"]

    bad = json.loads(json.dumps(MINIMAL_BUNDLE))
    app = bad["resources"]["apps"]["demo"]
    app["config"]["env"][0]["valu"] = "x"
    app["resources"][0]["serving_endpoint"]["permission"] = "CAN_QUERYY"
    bad["targets"]["dev"]["resources"]["apps"]["demo"]["nmae"] = "x"
    with pytest.raises(ValueError) as top:
        bv.load_bundle(bad)
    assert "resources.apps.demo.config.env[0].valu: unknown field" in str(top.value)
    assert "resources.apps.demo.resources[0].serving_endpoint.permission: 'CAN_QUERYY'" in str(
        top.value
    )
    with pytest.raises(ValueError, match=r"resources\.apps\.demo\.nmae: unknown field"):
        bv.load_bundle(bad, "dev")


DEPLOY_BUNDLE: dict[str, Any] = {
    "bundle": {"name": "demo"},
    "resources": {
        "apps": {
            "demo": {
                "name": "demo",
                "resources": [
                    {
                        "name": "experiment",
                        "experiment": {
                            "experiment_id": "${resources.experiments.exp.id}",
                            "permission": "CAN_EDIT",
                        },
                    }
                ],
            }
        },
        "experiments": {"exp": {"name": "/Users/${workspace.current_user.userName}/demo"}},
    },
    "targets": {
        "prod": {
            "mode": "production",
            "workspace": {
                "root_path": "/Workspace/Users/${workspace.current_user.userName}/.bundle/x"
            },
        }
    },
}
PERSON = bv.Identity("someone@example.com", "Someone")
ROBOT = bv.Identity("6f0c9a52-3b1e-4d7a-9c55-2e8f41b7d0a3", "ci")


def test_deploy_checks_flag_each_rule() -> None:
    assert bv.deploy_errors(DEPLOY_BUNDLE, "prod", PERSON) == []
    assert bv.deploy_errors(DEPLOY_BUNDLE, "prod", ROBOT) == []
    assert ROBOT.short_name == "ci" and PERSON.short_name == "someone"

    def errors(change: Callable[[dict[str, Any]], None], who: bv.Identity) -> str:
        bad = json.loads(json.dumps(DEPLOY_BUNDLE))
        change(bad)
        return "\n".join(bv.deploy_errors(bad, "prod", who))

    as_user = [{"level": "CAN_MANAGE", "user_name": "${workspace.current_user.userName}"}]
    assert "Principal: UserName(6f0c9a52" in errors(
        lambda d: d["targets"]["prod"].update(permissions=as_user), ROBOT
    )
    assert "drops its grant" in errors(
        lambda d: d["targets"]["prod"].update(permissions=as_user), PERSON
    )
    assert "must set workspace.root_path" in errors(
        lambda d: d["targets"]["prod"].pop("workspace"), PERSON
    )
    assert "reference does not exist: ${bundle.git.commit}" in errors(
        lambda d: d["resources"]["apps"]["demo"].update(description="${bundle.git.commit}"), PERSON
    )
    assert "reference does not exist: ${workspace.current_user.email}" in errors(
        lambda d: d["resources"]["apps"]["demo"].update(
            description="${workspace.current_user.email}"
        ),
        PERSON,
    )
    not_an_id = [{"level": "CAN_EDIT", "service_principal_name": "ci-bot"}]
    assert "is not an application id" in errors(
        lambda d: d["resources"]["experiments"]["exp"].update(permissions=not_an_id), PERSON
    )
    cyclic = {"experiment_id": "${resources.experiments.exp.id}", "permission": "CAN_EDIT"}
    assert "dependency cycle" in errors(
        lambda d: d["resources"]["experiments"]["exp"].update(
            name="${resources.apps.demo.service_principal_client_id}", x=cyclic
        ),
        PERSON,
    )


def test_yaml_loader_is_strict() -> None:
    with pytest.raises(bv.StrictYamlError, match="duplicate key 'a'"):
        bv.parse_yaml("a: 1\na: 2\n")
    assert bv.parse_yaml("a: [no, 1e3, 0o17, '1e3', x1]") == {"a": [False, 1000.0, 15, "1e3", "x1"]}


def test_text_hygiene_flags_each_rule() -> None:
    def problems(name: str, data: bytes) -> list[str]:
        return list(text_problems(name, data))

    assert problems("a.md", b"") == []
    assert problems("a.md", b"x\n\ny\n") == []
    assert problems("a.py", b"x\n\n\ny\n") == []  # ruff format governs Python blank lines
    assert problems("a.md", b"x") == ["a.md: does not end with a newline"]
    assert problems("a.md", b"x\n\n") == ["a.md: ends with blank lines"]
    assert problems("a.md", b"x \n") == ["a.md:1: trailing whitespace: 'x '"]
    assert problems("a.md", b"x\n\n\ny\n") == ["a.md:3: two consecutive blank lines"]
    assert problems("a.bin", b"\xff\n")[0].startswith("a.bin: not UTF-8 text")


def test_schema_validation_reports_nested_violations() -> None:
    bv.require_bundle_schema()
    assert bv.schema_errors(MINIMAL_BUNDLE) == []
    bad = json.loads(json.dumps(MINIMAL_BUNDLE))
    bad["resources"]["apps"]["demo"]["resources"][0]["serving_endpoint"]["permission"] = "X"
    bad["resources"]["apps"]["demo"]["config"]["env"][0]["valu"] = "x"
    bad["extra"] = 1
    errors = bv.schema_errors(bad)
    assert "extra: unknown top-level key" in errors
    assert any(
        e.startswith("resources.apps.demo.config.env.0: Additional properties") for e in errors
    )
    assert any(
        e.startswith("resources.apps.demo.resources.0.serving_endpoint.permission: 'X'")
        for e in errors
    )


# --- free-text prompts: only inert values, never code --------------------------------------

# Prompts that take free text (not an enum, not derived): their values reach YAML, TOML and
# Python files and the success message's shell commands.
FREE_TEXT = sorted(
    name
    for name, prop in PROPERTIES.items()
    if prop.get("type") == "string" and "enum" not in prop and prop.get("skip_prompt_if") != {}
)
# Characters with no meaning in YAML, TOML, Python or a shell, inside a quoted string or not.
INERT_VALUE = re.compile(r"^[A-Za-z0-9_.-]*$")
# List prompts: entries of those characters (and "/" in apps/<name>) separated by commas and
# spaces. The template splits the list and writes each entry as a quoted literal.
LIST_PROMPTS = {"subagents"}
INERT_LIST_VALUE = re.compile(r"^[A-Za-z0-9_./, -]*$")


@pytest.mark.parametrize("name", FREE_TEXT)
def test_free_text_prompt_pattern_is_anchored(name: str) -> None:
    """The CLI searches the pattern anywhere in the value (Go RE2, unanchored): without ^ and $
    a value with anything around an accepted part would be accepted."""
    prop = PROPERTIES[name]
    assert prop.get("pattern", "").startswith("^") and prop["pattern"].endswith("$"), name
    assert prop.get("pattern_match_failure_message"), name


@pytest.mark.parametrize("name", FREE_TEXT)
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_free_text_values_are_inert(name: str, data: st.DataObject) -> None:
    value = data.draw(pattern_strategy(name))
    inert = INERT_LIST_VALUE if name in LIST_PROMPTS else INERT_VALUE
    assert inert.match(value), f"{name} accepts {value!r}"


def python_shape(text: str) -> list[tuple[int, str]]:
    """The file's tokens, with the text of string literals and comments left out."""
    import io
    import tokenize

    literal = {tokenize.STRING, tokenize.COMMENT, getattr(tokenize, "FSTRING_MIDDLE", -1)}
    return [
        (token.type, "" if token.type in literal else token.string)
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
    ]


def data_shape(value: Any) -> Any:
    """The structure of parsed YAML/TOML/JSON: containers and scalar types, no strings."""
    if isinstance(value, Mapping):
        return ("map", [data_shape(item) for item in value.values()])
    if isinstance(value, list):
        return ("list", [data_shape(item) for item in value])
    return type(value).__name__


def file_shapes(project: Path) -> dict[str, Any]:
    shapes: dict[str, Any] = {}
    for path in project_files(project):
        name = path.relative_to(project).as_posix()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".py":
            shapes[name] = python_shape(text)
        elif path.suffix in (".yml", ".yaml"):
            shapes[name] = data_shape(bv.parse_yaml(text))
        elif path.suffix == ".toml":
            shapes[name] = data_shape(tomllib.loads(text))
        elif path.suffix == ".json":
            shapes[name] = data_shape(json.loads(text))
    return shapes


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_free_text_values_change_only_literals(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Any legal values give the same Python tokens (string literals and comments aside) and
    the same YAML/TOML/JSON structure as the defaults: a value never becomes code or a key.
    (A list prompt adds structure per entry: see test_subagent_values_change_only_literals.)"""
    config = {name: data.draw(pattern_strategy(name), label=name) for name in REQUIRED_TEXT}
    # Optional texts (default "") add lines when set: their values are drawn non-empty and
    # compared with the render of the matrix samples, which has the same lines.
    for name in OPTIONAL_TEXT:
        config[name] = data.draw(pattern_strategy(name).filter(bool), label=name)
    baseline = optional_baseline_shapes(tmp_path_factory, config)
    project = render_project(tmp_path_factory.mktemp("values"), config)
    shapes = file_shapes(project)
    assert shapes.keys() == baseline.keys()
    changed = [name for name in shapes if shapes[name] != baseline[name]]
    assert not changed, f"{config} changed the structure of {changed}"


REQUIRED_TEXT = [name for name in FREE_TEXT if PROPERTIES[name].get("default") != ""]
OPTIONAL_TEXT = [
    name for name in FREE_TEXT if PROPERTIES[name].get("default") == "" and name not in LIST_PROMPTS
]
_BASELINES: dict[tuple[Any, ...], dict[str, Any]] = {}


def optional_baseline_shapes(
    tmp_path_factory: pytest.TempPathFactory, config: Mapping[str, Any]
) -> dict[str, Any]:
    """The shapes of the project with every optional text set to its matrix sample, in the same
    form as `config` (uc_function_schema: a schema, or one function, which adds a resource)."""
    from conftest import OPTIONAL_TEXT_SAMPLES

    one_function = config.get("uc_function_schema", "").count(".") == 2
    key = (one_function,)
    if key not in _BASELINES:
        sample = {name: OPTIONAL_TEXT_SAMPLES[name] for name in OPTIONAL_TEXT}
        if one_function:
            sample["uc_function_schema"] = "main.agent_tools.lookup_order"
        project = render_project(tmp_path_factory.mktemp("baseline"), sample)
        _BASELINES[key] = file_shapes(project)
    return _BASELINES[key]


def test_env_file_is_ignored_by_git(rendered: RenderedCombination, tmp_path: Path) -> None:
    """In a fresh repository made of the generated project, .env (where secrets would go) is
    ignored, and .env.example (committed on purpose) is not."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(rendered.project, project)
    (project / ".env").write_text("DATABRICKS_TOKEN=dapi-never-committed\n", encoding="utf-8")
    (project / ".env.local").write_text("X=1\n", encoding="utf-8")

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, check=False, timeout=60
        )

    assert git("init", "-q").returncode == 0
    ignored = git("check-ignore", ".env", ".env.local", ".env.example")
    assert ignored.stdout.split() == [".env", ".env.local"], ignored
    git("add", "-A")
    staged = git("diff", "--cached", "--name-only").stdout.split()
    assert ".env.example" in staged
    assert ".env" not in staged and ".env.local" not in staged


@pytest.mark.parametrize("name", FREE_TEXT)
@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_free_text_value_outside_the_pattern_is_rejected(
    tmp_path_factory: pytest.TempPathFactory, name: str, data: st.DataObject
) -> None:
    """For every free-text prompt (tests/test_bad_input.py has more cases for the current ones):
    the error names the property and its rule, and nothing is written."""
    pattern = PROPERTIES[name]["pattern"]
    value = data.draw(st.text(max_size=40).filter(lambda s: not regex.fullmatch(pattern, s)))
    out = tmp_path_factory.mktemp("rejected") / "out"
    out.mkdir()
    result = render({name: value}, out)
    assert result.returncode != 0, f"accepted {name}={value!r}"
    assert name in result.stderr
    assert PROPERTIES[name]["pattern_match_failure_message"] in result.stderr
    assert list(out.iterdir()) == []


# --- sub-agents (prompt subagents) ---------------------------------------------------------


def subagent_entries(value: str) -> list[str]:
    return re.findall(r"[^, ]+", value)


def subagent_tools(project: Path) -> dict[str, str]:
    """Target -> tool name, as rendered in the project's SUBAGENTS (library/subagents.tmpl)."""
    code = (project / "agent_server" / "runtime" / "subagents.py").read_text(encoding="utf-8")
    return dict(re.findall(r'target="([^"]*)",\s*tool_name="([^"]*)"', code))


def subagent_resources(project: Path) -> dict[str, dict[str, Any]]:
    document = bv.load_yaml(project / "databricks.yml")
    (app,) = document["resources"]["apps"].values()
    return {r["name"]: r for r in app["resources"] if r["name"].startswith("subagent-")}


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=pattern_strategy("subagents"))
@example(value="null, apps/yes, 123,1e3")  # YAML would read these as null, bool, numbers
def test_subagent_values_change_only_literals(
    tmp_path_factory: pytest.TempPathFactory, value: str
) -> None:
    """Any legal list gives the structure of a plain list with the same kinds of entries: each
    entry becomes string literals and YAML strings (exactly as given), never code or keys."""
    entries = subagent_entries(value)
    assume(entries)
    plain = ", ".join(
        f"apps/app-{i}" if entry.startswith("apps/") else f"endpoint-{i}"
        for i, entry in enumerate(entries)
    )
    config = {"agent_framework": "openai-agents"}
    out = tmp_path_factory.mktemp("subagents") / "out"
    result = render({**config, "subagents": value}, out)
    # Entries that differ in case or punctuation only are rejected (see the test below).
    assume("as an entry before it does" not in result.stderr)
    assert result.returncode == 0, result.stderr
    project = out / str(full_config(config)["app_name"])
    reference = render_project(tmp_path_factory.mktemp("plain"), {**config, "subagents": plain})
    assert file_shapes(project) == file_shapes(reference)
    granted = []
    for resource in subagent_resources(project).values():
        kind = "app" if "app" in resource else "serving_endpoint"
        granted.append((kind, resource[kind]["name"], resource[kind]["permission"]))
    assert granted == [
        ("app", entry.removeprefix("apps/"), "CAN_USE")
        if entry.startswith("apps/")
        else ("serving_endpoint", entry, "CAN_QUERY")
        for entry in entries
    ]
    tools = subagent_tools(project)
    assert list(tools) == entries
    assert len(set(tools.values())) == len(entries)
    assert all(re.fullmatch(r"ask_[a-z0-9_]+", tool) for tool in tools.values())


def test_subagents_become_distinct_app_resources(tmp_path: Path) -> None:
    value = "research-agent, apps/billing-agent,Other_Endpoint"
    project = render_project(tmp_path, {"subagents": value})
    assert subagent_tools(project) == {
        "research-agent": "ask_research_agent",
        "apps/billing-agent": "ask_app_billing_agent",
        "Other_Endpoint": "ask_other_endpoint",
    }
    resources = subagent_resources(project)
    assert list(resources) == [
        "subagent-research-agent",
        "subagent-app-billing-agent",
        "subagent-other-endpoint",
    ]
    assert resources["subagent-app-billing-agent"]["app"] == {
        "name": "billing-agent",
        "permission": "CAN_USE",
    }
    assert resources["subagent-other-endpoint"]["serving_endpoint"] == {
        "name": "Other_Endpoint",
        "permission": "CAN_QUERY",
    }


# An app resource's `name`: the Apps API answers 400 INVALID_PARAMETER_VALUE beyond 30
# characters. library/subagents.tmpl names the sub-agents' resources
# within it, and `uv run migrate` (agent_cli/migration/resources.py) uses the same limit.
MAX_APP_RESOURCE_NAME = 30


def test_long_subagent_names_fit_the_app_resource_name_limit(tmp_path: Path) -> None:
    endpoint = "e" + "x" * 59  # the longest endpoint name the prompt takes
    long_a = "research-agent-with-a-long-name-number-one"
    long_b = "research-agent-with-a-long-name-number-two"
    app = "apps/a" + "b" * 28 + "c"  # the longest app name
    value = f"{endpoint}, {long_a}, {long_b}, {app}, short"
    project = render_project(tmp_path, {"subagents": value})
    names = list(subagent_resources(project))
    assert len(names) == 5 and len(set(names)) == 5, names
    for name in names:
        assert len(name) <= MAX_APP_RESOURCE_NAME, f"{name!r} is {len(name)} characters"
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name), name
    assert names[-1] == "subagent-short"  # names that fit stay as they were


def test_migration_uses_the_templates_app_resource_name_limit() -> None:
    define = (REPO_ROOT / "library" / "subagents.tmpl").read_text(encoding="utf-8")
    match = re.search(r"\$max_resource_name := (\d+)", define)
    assert match, "library/subagents.tmpl does not define $max_resource_name"
    assert int(match[1]) == MAX_APP_RESOURCE_NAME
    migration = PROJECT_TEMPLATE_DIR / "agent_cli" / "migration" / "resources.py"
    tree = ast.parse(migration.read_text(encoding="utf-8"))
    (limit,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "MAX_RESOURCE_NAME" for t in node.targets)
    ]
    assert limit == MAX_APP_RESOURCE_NAME


@pytest.mark.parametrize(
    ("value", "entry"),
    [("my-agent, my-agent", "my-agent"), ("app-xy, apps/xy", "apps/xy"), ("a-b, A_B", "A_B")],
)
def test_subagents_that_give_the_same_tool_are_rejected(
    tmp_path: Path, value: str, entry: str
) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    (tool,) = subagent_tools(render_project(alone, {"subagents": entry})).values()
    out = tmp_path / "out"
    out.mkdir()
    result = render({"subagents": value}, out)
    assert result.returncode != 0
    assert f'subagents: "{entry}" gives the tool name {tool}, as an entry before' in result.stderr
    assert list(out.iterdir()) == []
