"""The generated project's GitHub Actions workflows (prompt ci_workflow).

Each rendered workflow is checked by two independent tools: the published workflow JSON Schema
(SchemaStore's, vendored in check-jsonschema) and actionlint, which also type-checks the
`${{ }}` expressions and runs shellcheck on every `run:` script. Then what the workflows do is
read from their YAML: on pull requests lint, test and `bundle validate`; on main deploy to prod
with GitHub OIDC and smoke-test the app, with the names the bundle really has.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import bundle_validation as bv
from conftest import RenderedCombination

WORKFLOWS = ("ci.yml", "deploy.yml")
BIN_DIR = Path(sys.executable).parent
OIDC_ENV = {
    "DATABRICKS_AUTH_TYPE": "github-oidc",
    "DATABRICKS_HOST": "${{ vars.DATABRICKS_HOST }}",
    "DATABRICKS_CLIENT_ID": "${{ vars.DATABRICKS_CLIENT_ID }}",
}


def tool(name: str) -> str:
    """A linter installed with this repository's dev dependencies (its binary ships in a wheel)."""
    path = shutil.which(name, path=str(BIN_DIR))
    assert path, f"{name} is not installed in {BIN_DIR}: run `uv sync` (dev dependencies)"
    return path


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    # actionlint runs shellcheck on `run:` scripts when it is on PATH: make sure it is.
    env = {**os.environ, "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    tool("shellcheck")
    return subprocess.run(
        [tool("actionlint"), "-no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def workflow(case: RenderedCombination, name: str) -> dict[Any, Any]:
    document = bv.load_yaml(case.project / ".github" / "workflows" / name)
    assert isinstance(document, dict)
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in document:
        document["on"] = document.pop(True)
    return document


def scripts(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def commands(job: dict[str, Any]) -> list[str]:
    """Every shell line the job runs, in order, stripped."""
    return [line.strip() for script in scripts(job) for line in script.splitlines() if line.strip()]


def uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in job["steps"] if "uses" in step]


def first_index(lines: list[str], pattern: str) -> int:
    for index, line in enumerate(lines):
        if re.search(pattern, line):
            return index
    raise AssertionError(f"no command matches {pattern!r} in {lines}")


def test_workflows_follow_the_prompt(rendered: RenderedCombination) -> None:
    folder = rendered.project / ".github"
    if rendered.config["ci_workflow"] == "yes":
        assert sorted(p.name for p in (folder / "workflows").iterdir()) == sorted(WORKFLOWS)
    else:
        assert not folder.exists()


# Linter reports by the workflows' content: most prompt combinations render the same workflows,
# and each distinct pair is linted once per test process.
LINTED: dict[str, tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]] = {}


def test_workflows_pass_actionlint_and_the_workflow_schema(
    rendered: RenderedCombination,
) -> None:
    if rendered.config["ci_workflow"] != "yes":
        return  # no workflows: test_workflows_follow_the_prompt checks that
    paths = [rendered.project / ".github" / "workflows" / name for name in WORKFLOWS]
    content = hashlib.sha256(b"".join(path.read_bytes() + b"\0" for path in paths)).hexdigest()
    if content not in LINTED:
        LINTED[content] = (lint(*paths), schema_check(*paths))
    linted, checked = LINTED[content]
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_pull_requests_lint_test_and_validate(rendered: RenderedCombination) -> None:
    if rendered.config["ci_workflow"] != "yes":
        return
    ci = workflow(rendered, "ci.yml")
    assert "pull_request" in ci["on"]
    assert ci["permissions"] == {"contents": "read"}
    test, validate = ci["jobs"]["test"], ci["jobs"]["validate"]

    lines = commands(test)
    order = [
        first_index(lines, r"^uv sync$"),
        first_index(lines, r"^uv run ruff check \.$"),
        first_index(lines, r"^uv run ruff format --check \.$"),
        first_index(lines, r"^uv run pytest$"),
    ]
    assert order == sorted(order), lines
    # The tools the job runs are the project's own dev dependencies.
    pyproject = tomllib.loads((rendered.project / "pyproject.toml").read_text(encoding="utf-8"))
    dev = " ".join(pyproject["dependency-groups"]["dev"])
    assert "ruff" in dev and "pytest" in dev

    assert validate["permissions"]["id-token"] == "write"
    assert validate["env"] == OIDC_ENV
    assert any(u.startswith("databricks/setup-cli@") for u in uses(validate))
    lines = commands(validate)
    assert "databricks bundle validate --target dev" in lines
    assert "databricks bundle validate --target prod" in lines


def test_main_deploys_to_prod_with_oidc_and_smoke_tests(rendered: RenderedCombination) -> None:
    if rendered.config["ci_workflow"] != "yes":
        return
    deploy = workflow(rendered, "deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    (job,) = deploy["jobs"].values()
    assert job["environment"] == "prod"
    assert job["permissions"]["id-token"] == "write"
    assert {k: job["env"][k] for k in OIDC_ENV} == OIDC_ENV

    # The names the workflow uses are the bundle's: its app key and the prod app's name.
    document = bv.load_yaml(rendered.project / "databricks.yml")
    prod = bv.load_bundle(document, "prod")
    ((app_key, app),) = prod.apps.items()
    assert job["env"]["BUNDLE_KEY"] == app_key
    assert job["env"]["APP_NAME"] == app.name

    lines = commands(job)
    order = [
        # The deployed commit for MLflow version tracking (databricks.yml's git_commit).
        first_index(
            lines, r'^databricks bundle deploy --target prod --var "git_commit=\$GITHUB_SHA"$'
        ),
        first_index(lines, r'^databricks bundle run "\$BUNDLE_KEY" --target prod$'),
        first_index(lines, r'databricks apps get "\$APP_NAME" --output json'),
        first_index(lines, r'uv run test-agent "\$APP_URL"'),
    ]
    assert order == sorted(order), lines
    pyproject = tomllib.loads((rendered.project / "pyproject.toml").read_text(encoding="utf-8"))
    assert "test-agent" in pyproject["project"]["scripts"]


def test_no_workflow_uses_a_stored_secret(rendered: RenderedCombination) -> None:
    if rendered.config["ci_workflow"] != "yes":
        return
    for name in WORKFLOWS:
        text = (rendered.project / ".github" / "workflows" / name).read_text(encoding="utf-8")
        assert "secrets." not in text, name
        assert "DATABRICKS_TOKEN" not in text and "CLIENT_SECRET" not in text, name


def test_the_linters_catch_broken_workflows(tmp_path: Path) -> None:
    """Negative control: both tools really reject what they should."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "name: broken\n"
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    permissions:\n"
        "      id-token: writ\n"
        "    steps:\n"
        "      - run: echo ${{ var.DATABRICKS_HOST }} $UNQUOTED\n",
        encoding="utf-8",
    )
    linted = lint(broken)
    assert linted.returncode != 0
    assert '"writ" is invalid as permission' in linted.stdout
    assert 'undefined variable "var"' in linted.stdout
    assert "SC2086" in linted.stdout  # shellcheck ran on the script

    no_jobs = tmp_path / "no_jobs.yml"
    no_jobs.write_text("name: nothing\non: push\n", encoding="utf-8")
    checked = schema_check(no_jobs)
    assert checked.returncode != 0
    assert "'jobs' is a required property" in checked.stdout + checked.stderr
