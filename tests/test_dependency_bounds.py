"""The lower bounds in the generated pyproject.toml are real: the oldest allowed versions work.

uv's `lowest-direct` resolution installs the minimum version of every direct dependency; the
generated project's own agent and server tests must pass on it, as they do on the newest.
"""

import json
import re
import tomllib
from pathlib import Path

import pytest
from conftest import REPO_ROOT, render
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from project_commands import run

SCHEMA = json.loads((REPO_ROOT / "databricks_template_schema.json").read_text())
FRAMEWORKS = SCHEMA["properties"]["agent_framework"]["enum"]
# The tests that exercise the dependencies; the fake workspace's own tests do not need to run.
SUITES = {
    "langgraph": ["tests/test_agent.py", "tests/test_server.py"],
    "openai-agents": ["tests/test_agent.py", "tests/test_server.py"],
    "model-serving-migration": ["tests/test_migration_scaffold.py", "tests/test_server.py"],
}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_lowest_direct_dependencies_work(tmp_path: Path, framework: str) -> None:
    assert framework in SUITES, f"add the suites to run for {framework!r} to SUITES"
    result = render({"agent_framework": framework}, tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / SCHEMA["properties"]["app_name"]["default"]

    synced = run(["uv", "sync", "--quiet", "--resolution", "lowest-direct"], project, timeout=900)
    assert synced.returncode == 0, synced.stderr
    listed = run(["uv", "pip", "list", "--format", "json"], project, timeout=120)
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, dependencies["dependencies"]):
        minimum = next(s.version for s in requirement.specifier if s.operator == ">=")
        installed_version = Version(installed[canonicalize_name(requirement.name)])
        assert installed_version == Version(minimum), f"{requirement}: got {installed_version}"

    tests = run(
        ["uv", "run", "--no-sync", "pytest", "-q", "-p", "no:cacheprovider", *SUITES[framework]],
        project,
        timeout=900,
    )
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-2000:]
    assert re.search(r"\d+ passed", tests.stdout) and " failed" not in tests.stdout
