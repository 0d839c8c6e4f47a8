"""The template's minimum Databricks CLI version: one value, high enough for what it renders.

`min_databricks_cli_version` in databricks_template_schema.json is the source: `bundle init`
refuses an older CLI before it writes anything, and the generated project's prerequisite check
(`uv run quickstart`, `uv run deploy`) and README must say the same version.
"""

from __future__ import annotations

import ast
import re

from conftest import REPO_ROOT, load_template_schema

PROJECT_TEMPLATE = REPO_ROOT / "template" / "{{.app_name}}"

# Bundle features the rendered databricks.yml uses, and the first CLI release whose bundle
# schema has them (databricks/cli, bundle/schema/jsonschema.json, `git tag --contains`).
FEATURE_VERSIONS: dict[str, tuple[int, int, int]] = {
    # The `app` app resource (sub-agents that are apps, `apps/<name>`) with `name` and
    # `permission`: added by "Bump databricks-sdk-go to v0.127.0" (#4984), first in v0.298.0.
    "resources.apps.*.resources[].app": (0, 298, 0),
}


def schema_minimum() -> tuple[int, int, int]:
    text = load_template_schema()["min_databricks_cli_version"]
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", text)
    assert match, f"min_databricks_cli_version {text!r} is not vX.Y.Z"
    return (int(match[1]), int(match[2]), int(match[3]))


def test_minimum_covers_every_bundle_feature_used() -> None:
    minimum = schema_minimum()
    too_new = {
        feature: version for feature, version in FEATURE_VERSIONS.items() if version > minimum
    }
    assert not too_new, f"min_databricks_cli_version {minimum} is older than {too_new}"


def test_prerequisites_check_the_schema_minimum() -> None:
    source = (PROJECT_TEMPLATE / "agent_cli" / "prerequisites.py").read_text(encoding="utf-8")
    values = [
        ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "MIN_DATABRICKS_CLI_VERSION" for t in node.targets)
    ]
    assert values == [schema_minimum()]
    text = "v" + ".".join(map(str, schema_minimum()))
    versions = set(re.findall(r"v0\.\d+\.\d+", source.split('"""')[1]))
    assert versions == {text}, f"prerequisites.py's docstring names {versions}, not {text}"


def test_generated_readme_names_the_schema_minimum() -> None:
    text = "v" + ".".join(map(str, schema_minimum()))
    readme = (PROJECT_TEMPLATE / "README.md.tmpl").read_text(encoding="utf-8")
    assert f"Databricks CLI ({text} or later)" in readme


def test_project_tests_do_not_hard_code_the_minimum() -> None:
    for path in (PROJECT_TEMPLATE / "tests").glob("test_*.py"):
        text = path.read_text(encoding="utf-8")
        assert "needs v0." not in text, f"{path.name}: derive the version from prerequisites"


def test_stand_in_cli_is_newer_than_the_minimum() -> None:
    go = (REPO_ROOT / "tests" / "bundle_init" / "version.go").read_text(encoding="utf-8")
    match = re.search(r'const cliVersion = "(\d+)\.(\d+)\.(\d+)"', go)
    assert match
    assert tuple(map(int, match.groups())) >= schema_minimum()
