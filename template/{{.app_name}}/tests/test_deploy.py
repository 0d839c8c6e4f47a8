"""`uv run deploy` against a fake `databricks` executable, first on PATH, that records its
arguments and fails, when told to, with the real CLI's error texts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_cli import deploy as deploy_module
from agent_cli.deploy import main
from agent_cli.prerequisites import MIN_DATABRICKS_CLI_VERSION, version_text
from agent_cli.project import APP_NAME, BUNDLE_KEY, PROJECT_ROOT
from tests.cli_support import SCRIPTS_DIR, cli_env, output, run_in_process, write_executable

DEV_APP = f"dev-{APP_NAME}"
APP_URL = f"https://{DEV_APP}-1234567890123456.aws.databricksapps.com"

# Error texts of the Databricks CLI, as it prints them.
ERRORS = {
    # acceptance/bundle/resources/apps/create_already_exists/output.txt (direct engine)
    "app-exists": f"""Error: cannot create resources.apps.{BUNDLE_KEY}: An app with the same name \
already exists: {DEV_APP} (409 RESOURCE_ALREADY_EXISTS)

Endpoint: POST https://example.cloud.databricks.com/api/2.0/apps?no_compute=true
HTTP Status: 409 Conflict
API error_code: RESOURCE_ALREADY_EXISTS
API message: An app with the same name already exists: {DEV_APP}

Updating deployment state...
""",
    # The Apps API error the CLI passes on from `bundle run`.
    "in-progress": f"Error: Cannot deploy app {DEV_APP} as there is an active deployment in "
    "progress.\n",
    # bundle/permissions/permission_diagnostics.go, ReportPermissionDenied
    "path-permission": """Error: deployment permission denied for Tester.
Please make sure the current user or one of their groups is listed under the permissions of \
this bundle.
For assistance, contact the owners of this project.
They may need to redeploy the bundle to apply the new permissions.
Please refer to https://docs.databricks.com/dev-tools/bundles/permissions.html for more on \
managing permissions.
""",
    # bundle/permissions/terraform_errors.go, TryExtendTerraformPermissionError
    "resource-permission": f"""Error: permission denied creating or updating {BUNDLE_KEY}.
For assistance, contact the owners of this project.
They can redeploy the project to apply the latest set of permissions.
Please refer to https://docs.databricks.com/dev-tools/bundles/permissions.html for more on \
managing permissions.
""",
    # bundle/phases/deploy.go, approvalForDeploy
    "approval": "Error: the deployment requires destructive actions, but current console does "
    "not support prompting. Please specify --auto-approve if you would like to skip prompts "
    "and proceed\n",
}

FAKE_DATABRICKS = """
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
state = Path(os.environ["FAKE_DATABRICKS_DIR"])
with (state / "calls.jsonl").open("a") as log:
    record = {"args": args, "cwd": os.getcwd(), "stdin_tty": sys.stdin.isatty()}
    log.write(json.dumps(record) + "\\n")
errors = json.loads((state / "errors.json").read_text())
scenario = os.environ.get("FAKE_DATABRICKS_SCENARIO", "ok")


def fail(key):
    sys.stderr.write(errors[key])
    sys.exit(1)


if args == ["--version"]:
    print("Databricks CLI v" + os.environ.get("FAKE_DATABRICKS_VERSION", "0.298.0"))
elif args[:2] == ["bundle", "validate"]:
    print("Name: my-agent\\nTarget: " + args[args.index("-t") + 1] + "\\n\\nValidation OK!")
elif args[:2] == ["bundle", "deploy"]:
    print("Uploading bundle files...\\nDeploying resources...")
    if scenario == "app-exists" and not (state / "bound").exists():
        fail("app-exists")
    if scenario.endswith("permission"):
        fail(scenario)
    if scenario == "approval" and "--auto-approve" not in args:
        fail("approval")
    print("Updating deployment state...\\nDeployment complete!")
elif args[:3] == ["bundle", "deployment", "bind"]:
    (state / "bound").write_text(args[4])
    print("Successfully bound app with an id '" + args[4] + "'.")
elif args[:2] == ["bundle", "run"]:
    if scenario == "in-progress":
        fail("in-progress")
    print("App is in RUNNING state\\nYou can access the app at " + os.environ["FAKE_APP_URL"])
else:
    sys.stderr.write("Error: unknown command " + " ".join(args) + "\\n")
    sys.exit(1)
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_dir(tmp_path: Path) -> Path:
    """The fake CLI's folder: its calls (calls.jsonl), its error texts and its state."""
    state = tmp_path / "fake-databricks"
    state.mkdir()
    (state / "errors.json").write_text(json.dumps(ERRORS))
    write_executable(tmp_path / "bin" / "databricks", FAKE_DATABRICKS)
    return state


@pytest.fixture
def deploy(
    tmp_path: Path,
    cli_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    """Run deploy's main() in this process, with the fake CLI as the only `databricks`."""
    (tmp_path / ".env").write_text("# settings\nDATABRICKS_CONFIG_PROFILE=dev-profile\n")

    def run(*args: object, scenario: str = "ok", **env: str) -> subprocess.CompletedProcess[str]:
        environment = cli_env(
            tmp_path,
            FAKE_DATABRICKS_DIR=str(cli_dir),
            FAKE_DATABRICKS_SCENARIO=scenario,
            FAKE_APP_URL=APP_URL,
            **env,
        )
        argv = [*args, "--env-file", tmp_path / ".env"]
        return run_in_process(main, argv, environment, monkeypatch, capsys)

    return run


def calls(cli_dir: Path) -> list[dict[str, Any]]:
    path = cli_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def commands(cli_dir: Path) -> list[list[str]]:
    return [call["args"] for call in calls(cli_dir) if call["args"] != ["--version"]]


def test_help() -> None:
    result = subprocess.run(
        [SCRIPTS_DIR / "deploy", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for flag in ("--target", "--profile", "--var", "--bind-existing", "--auto-approve"):
        assert flag in result.stdout


def test_validates_deploys_and_runs(deploy: Run, cli_dir: Path) -> None:
    result = deploy()
    assert result.returncode == 0, output(result)
    target = ["-t", "dev", "-p", "dev-profile"]
    assert commands(cli_dir) == [
        ["bundle", "validate", *target],
        ["bundle", "deploy", *target],
        ["bundle", "run", BUNDLE_KEY, *target],
    ]
    assert all(call["cwd"] == str(PROJECT_ROOT) for call in calls(cli_dir))
    assert not any(call["stdin_tty"] for call in calls(cli_dir))
    # The CLI's own output is streamed through.
    for line in ("Validation OK!", "Deployment complete!", f"You can access the app at {APP_URL}"):
        assert line in result.stdout
    assert f"Smoke-test it: uv run test-agent {APP_URL} --profile dev-profile" in result.stdout


def test_the_checkouts_commit_is_passed(
    deploy: Run, cli_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # databricks.yml's git_commit variable: the deployed app has no .git folder of its own.
    git_binary = shutil.which("git")
    assert git_binary is not None, "the tests need git"
    (tmp_path / "bin" / "git").symlink_to(git_binary)  # the fake CLI's PATH has only bin/
    source = tmp_path / "source"
    source.mkdir()
    monkeypatch.setattr(deploy_module, "PROJECT_ROOT", source)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert deploy("--no-run").returncode == 0
    assert not any("--var" in args for args in commands(cli_dir)), commands(cli_dir)

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        git = ["git", *args]
        subprocess.run(git, cwd=source, env={**os.environ, **env}, check=True, timeout=30)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
    ).stdout.strip()
    (cli_dir / "calls.jsonl").unlink()
    assert deploy("--no-run").returncode == 0
    validate, deployed = commands(cli_dir)
    for args in (validate, deployed):
        assert args[args.index("--var") + 1] == f"git_commit={head}", args

    (cli_dir / "calls.jsonl").unlink()
    assert deploy("--no-run", "--var", "git_commit=abc1234").returncode == 0
    for args in commands(cli_dir):
        assert [a for a in args if a.startswith("git_commit=")] == ["git_commit=abc1234"], args


def test_target_profile_variables_and_no_run(deploy: Run, cli_dir: Path) -> None:
    flags = ["--target", "prod", "--profile", "prod-profile", "--no-run"]
    result = deploy(*flags, "--var", "serving_endpoint=my-llm")
    assert result.returncode == 0, output(result)
    target = ["-t", "prod", "-p", "prod-profile", "--var", "serving_endpoint=my-llm"]
    assert commands(cli_dir) == [["bundle", "validate", *target], ["bundle", "deploy", *target]]
    assert f"`databricks bundle run {BUNDLE_KEY} {' '.join(target)}`" in result.stdout


def test_app_that_already_exists_is_explained(deploy: Run, cli_dir: Path) -> None:
    result = deploy(scenario="app-exists")
    assert result.returncode == 1
    assert f"the app '{DEV_APP}' already exists in the workspace" in result.stderr
    bind = f"databricks bundle deployment bind {BUNDLE_KEY} {DEV_APP} -t dev -p dev-profile"
    assert bind in result.stderr
    assert "uv run deploy --bind-existing" in result.stderr
    assert "An app with the same name already exists" in result.stdout  # the CLI's own text
    assert commands(cli_dir)[-1][:2] == ["bundle", "deploy"]  # stopped there: no bundle run


def test_bind_existing_binds_the_app_and_deploys_again(deploy: Run, cli_dir: Path) -> None:
    result = deploy("--bind-existing", scenario="app-exists")
    assert result.returncode == 0, output(result)
    target = ["-t", "dev", "-p", "dev-profile"]
    assert commands(cli_dir) == [
        ["bundle", "validate", *target],
        ["bundle", "deploy", *target],
        ["bundle", "deployment", "bind", BUNDLE_KEY, DEV_APP, "--auto-approve", *target],
        ["bundle", "deploy", *target],
        ["bundle", "run", BUNDLE_KEY, *target],
    ]


def test_deployment_in_progress_is_explained(deploy: Run) -> None:
    result = deploy(scenario="in-progress")
    assert result.returncode == 1
    assert f"another deployment of the app '{DEV_APP}' is still in progress" in result.stderr
    assert f"databricks apps get {DEV_APP} -p dev-profile" in result.stderr


@pytest.mark.parametrize("scenario", ["path-permission", "resource-permission"])
def test_missing_permissions_are_explained(deploy: Run, scenario: str) -> None:
    result = deploy(scenario=scenario)
    assert result.returncode == 1
    assert "`bundle deploy` was refused for lack of a permission" in result.stderr
    assert "databricks current-user me -p dev-profile" in result.stderr
    assert "CAN_QUERY on the serving endpoint" in result.stderr


def test_change_needing_approval(deploy: Run, cli_dir: Path) -> None:
    refused = deploy(scenario="approval")
    assert refused.returncode == 1
    assert "needs approval for a change" in refused.stderr
    assert "uv run deploy --auto-approve" in refused.stderr

    approved = deploy("--auto-approve", scenario="approval")
    assert approved.returncode == 0, output(approved)
    assert ["bundle", "deploy", "-t", "dev", "-p", "dev-profile", "--auto-approve"] in commands(
        cli_dir
    )


def test_missing_or_old_cli(deploy: Run, tmp_path: Path, cli_dir: Path) -> None:
    old = deploy(FAKE_DATABRICKS_VERSION="0.250.0")
    assert old.returncode == 1
    needs = f"needs {version_text(MIN_DATABRICKS_CLI_VERSION)} or later"
    assert f"is v0.250.0; this project {needs}" in old.stderr
    assert commands(cli_dir) == []  # nothing run with a CLI that is too old

    (tmp_path / "bin" / "databricks").unlink()
    missing = deploy()
    assert missing.returncode == 1
    assert "the Databricks CLI is not installed" in missing.stderr
    assert "install" in missing.stderr
    assert "Traceback" not in output(missing)
