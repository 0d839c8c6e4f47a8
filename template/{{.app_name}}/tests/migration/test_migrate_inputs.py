"""Bad inputs end with a clear message and leave the project byte-for-byte untouched; dry runs
change nothing; re-runs are safe; dependency conflicts are reported, never silently settled."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.fake_workspace import FakeWorkspace
from tests.fake_workspace.serving_api import agent_endpoint, served_model
from tests.migration.conftest import LoggedAgent
from tests.migration.support import (
    copy_project,
    migrate_env,
    run_migrate,
    snapshot,
    tree_differences,
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")


@pytest.fixture
def env(migration_fake: FakeWorkspace, mlflow_store: str) -> dict[str, str]:
    return migrate_env(migration_fake, mlflow_store)


def model_copy(agent: LoggedAgent, destination: Path) -> Path:
    shutil.copytree(agent.model_dir, destination)
    return destination


def edit_mlmodel(model_dir: Path, edit: object) -> None:
    path = model_dir / "MLmodel"
    data = yaml.safe_load(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data))


def assert_refused(
    project: Path, env: dict[str, str], *args: str, says: str
) -> subprocess.CompletedProcess[str]:
    before = snapshot(project)
    result = run_migrate(project, *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr, result.stderr
    assert "Nothing was changed." in result.stderr
    assert tree_differences(before, snapshot(project)) == []
    return result


def test_a_directory_that_is_not_an_mlflow_model(
    project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    not_a_model = tmp_path / "downloads"
    not_a_model.mkdir()
    (not_a_model / "agent.py").write_text("print('hello')\n")
    assert_refused(project, env, "--model-dir", str(not_a_model), says="is not an MLflow model")
    assert_refused(project, env, "--model-dir", str(tmp_path / "missing"), says="not a directory")


def test_an_mlmodel_without_a_responses_agent(
    project: Path, env: dict[str, str], plain_pyfunc_dir: Path, tmp_path: Path
) -> None:
    assert_refused(project, env, "--model-dir", str(plain_pyfunc_dir), says="has no ResponsesAgent")


def test_a_chat_agent_is_named_as_such(
    project: Path, env: dict[str, str], logged_agents: dict[str, LoggedAgent], tmp_path: Path
) -> None:
    model = model_copy(logged_agents["chat"], tmp_path / "model")
    edit_mlmodel(model, lambda data: data["metadata"].update(task="agent/v2/chat"))
    assert_refused(project, env, "--model-dir", str(model), says="an MLflow ChatAgent")


def test_an_endpoint_that_does_not_exist(
    project: Path, env: dict[str, str], migration_fake: FakeWorkspace
) -> None:
    migration_fake.configure(endpoints={"migrate-test-llm"})
    try:
        assert_refused(project, env, "--endpoint", "no-such-agent", says="does not exist")
    finally:
        migration_fake.configure(endpoints=None)


def test_an_endpoint_serving_a_foundation_model(project: Path, env: dict[str, str]) -> None:
    assert_refused(
        project,
        env,
        "--endpoint",
        "databricks-claude-sonnet-4-5",
        says="is a foundation model, not a registered agent model",
    )


def test_an_endpoint_with_evenly_split_traffic(
    project: Path,
    env: dict[str, str],
    migration_fake: FakeWorkspace,
    logged_agents: dict[str, LoggedAgent],
) -> None:
    name = logged_agents["chat"].registered_name
    split = agent_endpoint(
        "ab-test",
        [served_model(name, "1", traffic=50, name="a"), served_model(name, "2", traffic=50)],
    )
    migration_fake.configure(serving_endpoints={"ab-test": split})
    try:
        assert_refused(project, env, "--endpoint", "ab-test", says="--served-entity")
    finally:
        migration_fake.configure(serving_endpoints=None)


def test_an_unknown_resource_type(
    project: Path, env: dict[str, str], logged_agents: dict[str, LoggedAgent], tmp_path: Path
) -> None:
    model = model_copy(logged_agents["chat"], tmp_path / "model")
    edit_mlmodel(
        model,
        lambda data: data["resources"]["databricks"].update(quantum_computer=[{"name": "qc-1"}]),
    )
    assert_refused(
        project, env, "--model-dir", str(model), "--frozen", says="quantum_computer 'qc-1'"
    )
    # Told to, migrate goes on and leaves the unknown resource to a person.
    result = run_migrate(
        project,
        "--model-dir",
        str(model),
        "--frozen",
        "--skip-verify",
        "--skip-unknown-resources",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = (project / "MIGRATION.md").read_text()
    assert "Grant the app access to quantum_computer `qc-1` by hand" in report


def test_a_model_uri_that_does_not_exist(project: Path, env: dict[str, str]) -> None:
    assert_refused(
        project,
        env,
        "--model-uri",
        "models:/main.migration_tests.nothing/1",
        "--frozen",
        says="Could not download models:/main.migration_tests.nothing/1",
    )


def test_no_source_on_an_unmigrated_project(project: Path, env: dict[str, str]) -> None:
    assert_refused(project, env, says="--endpoint NAME, --model-uri URI or --model-dir DIR")


def test_conflicting_requirements_are_reported_not_settled(
    project: Path, env: dict[str, str], logged_agents: dict[str, LoggedAgent], tmp_path: Path
) -> None:
    model = model_copy(logged_agents["predict_only"], tmp_path / "model")
    requirements = model / "requirements.txt"
    requirements.write_text(requirements.read_text() + "\nfastapi<0.100\npython-dotenv>=1.0\n")
    result = assert_refused(
        project, env, "--model-dir", str(model), "--frozen", says="conflict with the project's"
    )
    assert "fastapi: the project has `fastapi>=0.115`, the model `fastapi<0.100`" in result.stderr

    result = run_migrate(
        project,
        "--model-dir",
        str(model),
        "--frozen",
        "--skip-verify",
        "--on-conflict",
        "project",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    assert "fastapi>=0.115" in dependencies and "fastapi<0.100" not in dependencies
    # The model's python-dotenv>=1.0 agrees with the project's pin: kept, nothing added.
    assert [d for d in dependencies if d.startswith("python-dotenv")] == ["python-dotenv>=1.2.2"]
    report = (project / "MIGRATION.md").read_text()
    assert "Conflict: fastapi: the project has `fastapi>=0.115`" in report
    assert "kept the project's" in report


def test_dry_run_prints_the_plan_and_changes_nothing(
    project: Path, env: dict[str, str], logged_agents: dict[str, LoggedAgent]
) -> None:
    agent = logged_agents["langgraph"]
    before = snapshot(project)
    result = run_migrate(project, "--model-dir", str(agent.model_dir), "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert tree_differences(before, snapshot(project)) == []
    assert "Dry run: nothing was changed." in result.stdout
    assert "create    agent_server/migrated/model/" in result.stdout
    assert "function main.tools.forecast: on behalf of the user" in result.stdout
    assert "uc_connection weather_api -> connection-weather-api: uc_securable" in result.stdout


def test_rerunning_is_safe_and_changes_nothing(
    project: Path, env: dict[str, str], logged_agents: dict[str, LoggedAgent]
) -> None:
    agent = logged_agents["multifile"]
    args = ("--model-dir", str(agent.model_dir), "--frozen", "--skip-verify")
    first = run_migrate(project, *args, env=env)
    assert first.returncode == 0, first.stderr
    migrated = snapshot(project)
    again = run_migrate(project, *args, env=env)
    assert again.returncode == 0, again.stderr
    assert "changed: nothing (already migrated)" in again.stdout
    assert tree_differences(migrated, snapshot(project)) == []
    # With no source, a re-run uses the model it downloaded before.
    from_previous = run_migrate(project, "--frozen", "--skip-verify", env=env)
    assert from_previous.returncode == 0, from_previous.stderr
    differences = tree_differences(migrated, snapshot(project))
    assert differences in ([], ["~MIGRATION.md", "~agent_server/migrated/migration.json"])


def test_an_agent_py_you_changed_is_not_overwritten(
    project: Path, env: dict[str, str], logged_agents: dict[str, LoggedAgent]
) -> None:
    agent = logged_agents["chat"]
    args = ("--model-dir", str(agent.model_dir), "--frozen", "--skip-verify")
    assert run_migrate(project, *args, env=env).returncode == 0
    agent_py = project / "agent_server/agent.py"
    agent_py.write_text(agent_py.read_text() + "\n# my own change\n")
    assert_refused(project, env, *args, says="Pass --force to replace it")
    forced = run_migrate(project, *args, "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert "# my own change" not in agent_py.read_text()


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("pickled", "pickled python_model: there is no source to rewrite"),
        ("multifile", "it reads artifacts through load_context(context)"),
    ],
)
def test_rewrite_is_refused_where_it_is_not_safe(
    key: str, reason: str, project: Path, env: dict[str, str], logged_agents: dict[str, LoggedAgent]
) -> None:
    agent = logged_agents[key]
    result = assert_refused(
        project, env, "--model-dir", str(agent.model_dir), "--rewrite", "--frozen", says=reason
    )
    assert "Without --rewrite, migrate serves the original agent unchanged" in result.stderr


def test_dependencies_are_locked_through_uv(
    project: Path, env: dict[str, str], logged_agents: dict[str, LoggedAgent], tmp_path: Path
) -> None:
    """Without --frozen, uv resolves the merged requirements into uv.lock (a small set here)."""
    model = model_copy(logged_agents["pickled"], tmp_path / "model")
    (model / "requirements.txt").write_text("cloudpickle\n")
    result = run_migrate(project, "--model-dir", str(model), "--no-sync", "--skip-verify", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert [d for d in pyproject["project"]["dependencies"] if d.startswith("cloudpickle")]
    lock = tomllib.loads((project / "uv.lock").read_text())
    [own] = [p for p in lock["package"] if p["name"] == pyproject["project"]["name"]]
    assert {"name": "cloudpickle"} in own["dependencies"]
