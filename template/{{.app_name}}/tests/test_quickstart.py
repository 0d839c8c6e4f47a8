"""`uv run quickstart` against the fake workspace: the console script, as a user runs it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from agent_cli import quickstart as quickstart_module
from agent_cli.env_file import EnvFile
from agent_cli.prerequisites import MIN_DATABRICKS_CLI_VERSION, version_text
from agent_cli.project import (
    APP_NAME,
    DEFAULT_SERVING_ENDPOINT,
    ENV_EXAMPLE_FILE,
    GENIE_SPACE_ID,
)
from agent_cli.quickstart import local_memory_schema, main
from tests.cli_support import (
    CLI_TIMEOUT_SECONDS,
    SCRIPTS_DIR,
    cli_env,
    output,
    run_cli,
    run_in_process,
    write_executable,
    write_profiles,
)
from tests.fake_workspace import DEFAULT_TOKEN, FakeWorkspace
from tests.fake_workspace.core import FAKE_USER
from tests.fake_workspace.mlflow_api import experiments
from tests.support import refused_url

USER = FAKE_USER["userName"]
EXPERIMENT_NAME = f"/Users/{USER}/{APP_NAME}-local"
BAD_TOKEN = "dapi-rejected-token-0123"
UNREACHABLE_BOUND_SECONDS = 60
HOST_METADATA_PATH = "/.well-known/databricks-config"


@pytest.fixture
def home(tmp_path: Path, fake: FakeWorkspace) -> Path:
    """A test folder with a config file holding profiles for `fake` (DEFAULT and `rejected`)."""
    write_profiles(
        tmp_path / "databrickscfg",
        {
            "DEFAULT": {"host": fake.url, "token": DEFAULT_TOKEN},
            "rejected": {"host": fake.url, "token": BAD_TOKEN},
        },
    )
    return tmp_path


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def quickstart(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run quickstart's main() in this process (a new interpreter costs seconds of imports)."""

    def run(*args: object, **env: str) -> subprocess.CompletedProcess[str]:
        argv = ["--env-file", home / ".env", *args]
        return run_in_process(main, argv, cli_env(home, **env), monkeypatch, capsys)

    return run


def quickstart_script(home: Path, *args: object) -> subprocess.CompletedProcess[str]:
    """Run the `quickstart` console script, as a user does."""
    return run_cli("quickstart", "--env-file", home / ".env", *args, env=cli_env(home), cwd=home)


def env_values(home: Path) -> dict[str, str | None]:
    env = EnvFile.load(home / ".env")
    keys = (
        "DATABRICKS_CONFIG_PROFILE",
        "DATABRICKS_HOST",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_ID",
        "SERVING_ENDPOINT",
    )
    return {key: env.get(key) for key in keys}


# The Genie space chosen at init, when there is one, is checked right after the endpoint.
GENIE_CALLS = [("GET", f"/api/2.0/genie/spaces/{GENIE_SPACE_ID}")] if GENIE_SPACE_ID else []


def api_calls(fake: FakeWorkspace) -> list[tuple[str, str]]:
    """The API calls the fake received, without the host metadata probe of newer SDKs
    (`GET /.well-known/databricks-config`, sent while the client is built)."""
    return [(r.method, r.path) for r in fake.requests if r.path != HOST_METADATA_PATH]


def assert_no_secret(home: Path, *results: subprocess.CompletedProcess[str]) -> None:
    for secret in (DEFAULT_TOKEN, BAD_TOKEN):
        for result in results:
            assert secret not in output(result)
        for path in home.rglob("*"):
            if path.is_file() and path.name != "databrickscfg":
                assert secret not in path.read_text(errors="replace"), path


def test_help() -> None:
    result = subprocess.run(
        [SCRIPTS_DIR / "quickstart", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for flag in ("--profile", "--host", "--yes", "--overwrite", "--serving-endpoint"):
        assert flag in result.stdout


def test_first_run_creates_the_experiment_and_writes_env(home: Path, fake: FakeWorkspace) -> None:
    result = quickstart_script(home, "--profile", "DEFAULT", "--yes")
    assert result.returncode == 0, output(result)

    [created] = experiments(fake).all()
    assert created.name == EXPERIMENT_NAME
    assert env_values(home) == {
        "DATABRICKS_CONFIG_PROFILE": "DEFAULT",
        "DATABRICKS_HOST": None,
        "MLFLOW_TRACKING_URI": "databricks://DEFAULT",
        "MLFLOW_EXPERIMENT_ID": created.experiment_id,
        "SERVING_ENDPOINT": DEFAULT_SERVING_ENDPOINT,
    }
    text = (home / ".env").read_text()
    # Started from .env.example: its comments stay, and the commented-out keys were filled in
    # where they were.
    example = ENV_EXAMPLE_FILE.read_text()
    assert text.splitlines()[0] == example.splitlines()[0]
    assert text.count("MLFLOW_EXPERIMENT_ID") == 1
    assert (home / ".env").stat().st_mode & 0o777 == 0o600
    assert "uv run start-server" in result.stdout
    assert "the Databricks CLI is not installed" in result.stdout  # needed for deploy only
    assert_no_secret(home, result)

    # What the SDK really sent, in order.
    calls = api_calls(fake)
    assert calls == [
        ("GET", "/api/2.0/preview/scim/v2/Me"),
        ("GET", f"/api/2.0/serving-endpoints/{DEFAULT_SERVING_ENDPOINT}"),
        *GENIE_CALLS,
        ("GET", "/api/2.0/mlflow/experiments/get-by-name"),
        ("POST", "/api/2.0/mlflow/experiments/create"),
    ]
    [by_name] = [r for r in fake.requests if r.path.endswith("/get-by-name")]
    assert parse_qs(by_name.query) == {"experiment_name": [EXPERIMENT_NAME]}
    assert fake.requests[-1].body == {"name": EXPERIMENT_NAME}


def test_rerun_changes_nothing(quickstart: Run, home: Path, fake: FakeWorkspace) -> None:
    first = quickstart("--profile", "DEFAULT", "--yes")
    assert first.returncode == 0, output(first)
    before = (home / ".env").read_bytes()
    written = (home / ".env").stat().st_mtime_ns
    fake.clear_requests()

    # No flags at all: the profile comes from .env, and nothing needs a confirmation.
    again = quickstart()
    assert again.returncode == 0, output(again)
    assert "nothing to change" in again.stdout
    assert (home / ".env").read_bytes() == before
    assert (home / ".env").stat().st_mtime_ns == written  # not even rewritten
    assert len(experiments(fake).all()) == 1
    # The experiment is read by the id in .env; nothing is created.
    assert api_calls(fake) == [
        ("GET", "/api/2.0/preview/scim/v2/Me"),
        ("GET", f"/api/2.0/serving-endpoints/{DEFAULT_SERVING_ENDPOINT}"),
        *GENIE_CALLS,
        ("GET", "/api/2.0/mlflow/experiments/get"),
    ]

    # Without .env, the experiment is found by name, not created again.
    (home / ".env").unlink()
    third = quickstart("--profile", "DEFAULT", "--yes")
    assert third.returncode == 0, output(third)
    assert len(experiments(fake).all()) == 1
    assert (home / ".env").read_bytes() == before


def test_user_edited_values_are_kept_unless_a_flag_says_otherwise(
    quickstart: Run, home: Path, fake: FakeWorkspace
) -> None:
    assert quickstart("--profile", "DEFAULT", "--yes").returncode == 0
    own = experiments(fake).create(f"/Users/{USER}/my-own-experiment")
    assert own is not None
    env = EnvFile.load(home / ".env")
    env.set("MLFLOW_EXPERIMENT_ID", own.experiment_id)
    env.set("MLFLOW_TRACKING_URI", "databricks://DEFAULT?tracing=mine")
    env.set("SERVING_ENDPOINT", "my-endpoint")
    env.set("LOG_LEVEL", "DEBUG")
    env.save()
    (home / ".env").write_text((home / ".env").read_text() + "# my own note\n")
    edited = (home / ".env").read_bytes()

    kept = quickstart("--yes")
    assert kept.returncode == 0, output(kept)
    assert (home / ".env").read_bytes() == edited
    assert "keep     MLFLOW_TRACKING_URI=databricks://DEFAULT?tracing=mine" in kept.stdout
    assert "--overwrite replaces it" in kept.stdout

    flagged = quickstart("--serving-endpoint", "other-endpoint", "--yes")
    assert flagged.returncode == 0, output(flagged)
    values = env_values(home)
    assert values["SERVING_ENDPOINT"] == "other-endpoint"
    assert values["MLFLOW_EXPERIMENT_ID"] == own.experiment_id
    assert values["MLFLOW_TRACKING_URI"] == "databricks://DEFAULT?tracing=mine"

    overwritten = quickstart("--overwrite", "--yes")
    assert overwritten.returncode == 0, output(overwritten)
    project_experiment = experiments(fake).by_name(EXPERIMENT_NAME)
    assert project_experiment is not None
    values = env_values(home)
    assert values["MLFLOW_TRACKING_URI"] == "databricks://DEFAULT"
    assert values["MLFLOW_EXPERIMENT_ID"] == project_experiment.experiment_id
    assert values["SERVING_ENDPOINT"] == DEFAULT_SERVING_ENDPOINT
    text = (home / ".env").read_text()
    assert "LOG_LEVEL=DEBUG" in text and "# my own note" in text


def test_switching_profile_moves_the_workspace_values(
    quickstart: Run, home: Path, fake: FakeWorkspace
) -> None:
    with FakeWorkspace() as other:
        profiles = {
            "DEFAULT": {"host": fake.url, "token": DEFAULT_TOKEN},
            "other": {"host": other.url, "token": DEFAULT_TOKEN},
        }
        write_profiles(home / "databrickscfg", profiles)
        assert quickstart("--profile", "DEFAULT", "--yes").returncode == 0
        switched = quickstart("--profile", "other", "--yes")
        assert switched.returncode == 0, output(switched)
        [in_other] = experiments(other).all()
        assert env_values(home) == {
            "DATABRICKS_CONFIG_PROFILE": "other",
            "DATABRICKS_HOST": None,
            "MLFLOW_TRACKING_URI": "databricks://other",
            "MLFLOW_EXPERIMENT_ID": in_other.experiment_id,
            "SERVING_ENDPOINT": DEFAULT_SERVING_ENDPOINT,
        }


def test_host_without_a_profile(quickstart: Run, home: Path, fake: FakeWorkspace) -> None:
    result = quickstart("--host", fake.url, "--yes", DATABRICKS_TOKEN=DEFAULT_TOKEN)
    assert result.returncode == 0, output(result)
    values = env_values(home)
    assert values["DATABRICKS_HOST"] == fake.url
    assert values["DATABRICKS_CONFIG_PROFILE"] is None  # .env.example's line, commented out
    assert values["MLFLOW_TRACKING_URI"] == "databricks"
    assert "# DATABRICKS_CONFIG_PROFILE=" in (home / ".env").read_text()
    assert_no_secret(home, result)


def test_deleted_experiment_is_restored(quickstart: Run, home: Path, fake: FakeWorkspace) -> None:
    deleted = experiments(fake).create(EXPERIMENT_NAME)
    assert deleted is not None
    experiments(fake).set_stage(deleted.experiment_id, "deleted")
    result = quickstart("--profile", "DEFAULT", "--yes")
    assert result.returncode == 0, output(result)
    assert "restored" in result.stdout
    assert env_values(home)["MLFLOW_EXPERIMENT_ID"] == deleted.experiment_id
    [restored] = experiments(fake).all()
    assert restored.lifecycle_stage == "active"


def test_unknown_profile(quickstart: Run, home: Path) -> None:
    result = quickstart("--profile", "nope", "--yes")
    assert result.returncode == 1
    assert "there is no profile 'nope'" in result.stderr
    assert "profiles: DEFAULT, rejected" in result.stderr
    assert "databricks auth login --profile nope" in result.stderr
    assert "Traceback" not in output(result)
    assert not (home / ".env").exists()


def test_rejected_credentials_say_how_to_log_in(quickstart: Run, home: Path) -> None:
    result = quickstart("--profile", "rejected", "--yes")
    assert result.returncode == 1
    assert "rejected the credentials of profile rejected" in result.stderr
    assert "databricks auth login --profile rejected" in result.stderr
    assert "Traceback" not in output(result)
    assert not (home / ".env").exists()
    assert_no_secret(home, result)


def test_unreachable_host_fails_within_the_timeout(home: Path) -> None:
    with refused_url() as dead:
        write_profiles(home / "databrickscfg", {"DEFAULT": {"host": dead, "token": BAD_TOKEN}})
        # With the SDK's defaults this would retry for 300 s; run_cli would then raise
        # TimeoutExpired after UNREACHABLE_BOUND_SECONDS.
        result = run_cli(
            "quickstart",
            *("--env-file", home / ".env", "--profile", "DEFAULT", "--timeout", "1", "--yes"),
            env=cli_env(home),
            cwd=home,
            timeout=UNREACHABLE_BOUND_SECONDS,
        )
    assert result.returncode == 1
    assert f"{dead} (profile DEFAULT) did not answer within 1 s" in result.stderr
    assert "--timeout" in result.stderr
    assert "Traceback" not in output(result)
    assert not (home / ".env").exists()


def test_without_a_terminal_or_flags_it_names_the_flag(quickstart: Run, home: Path) -> None:
    result = quickstart()  # stdin is not a terminal, and no .env or environment says
    assert result.returncode == 1
    assert "pass --profile NAME" in result.stderr
    assert "DEFAULT, rejected" in result.stderr
    assert not (home / ".env").exists()

    # A change to make, without --yes: it names that flag too.
    result = quickstart("--profile", "DEFAULT")
    assert result.returncode == 1
    assert "pass --yes" in result.stderr
    assert not (home / ".env").exists()


def test_missing_serving_endpoint_is_reported(
    quickstart: Run, home: Path, fake: FakeWorkspace
) -> None:
    fake.configure(endpoints={"some-other-endpoint"})
    result = quickstart("--profile", "DEFAULT", "--yes")
    assert result.returncode == 1
    assert (
        f"the serving endpoint '{DEFAULT_SERVING_ENDPOINT}' does not exist in {fake.url}"
        in result.stderr
    )
    assert "--serving-endpoint NAME" in result.stderr
    assert "databricks serving-endpoints list" in result.stderr
    # Everything else is set up; only the endpoint needs fixing.
    assert env_values(home)["MLFLOW_EXPERIMENT_ID"] is not None

    fixed = quickstart("--serving-endpoint", "some-other-endpoint", "--yes")
    assert fixed.returncode == 0, output(fixed)
    assert "uv run deploy --var serving_endpoint=some-other-endpoint" in fixed.stdout


def test_genie_space_and_its_warehouse_are_reported(
    quickstart: Run, home: Path, fake: FakeWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The project's own space when it has one (also in .env.example), else one for the test.
    space = GENIE_SPACE_ID or "01ef0123456789abcdef0123456789ab"
    monkeypatch.setattr(quickstart_module, "GENIE_SPACE_ID", space)
    result = quickstart("--profile", "DEFAULT", "--yes")
    assert result.returncode == 0, output(result)
    assert f"Genie space {space}" in result.stdout
    warehouse = fake.settings.genie_warehouse_id
    assert f"SQL warehouse {warehouse}" in result.stdout
    # What only an admin can check: the grants the app's service principal needs.
    assert f"CAN_USE on SQL warehouse {warehouse}" in result.stdout
    assert "SELECT on the space's tables" in result.stdout
    assert ("GET", f"/api/2.0/genie/spaces/{space}") in api_calls(fake)

    fake.configure(genie_spaces_missing=[space])
    missing = quickstart("--yes")
    assert missing.returncode == 1
    assert f"the Genie space {space} does not exist in {fake.url}" in missing.stderr


def test_tools_are_checked(quickstart: Run, home: Path) -> None:
    write_executable(home / "bin" / "databricks", 'print("Databricks CLI v0.250.0")\n')
    result = quickstart("--profile", "DEFAULT", "--yes")
    assert result.returncode == 0, output(result)  # an old CLI only matters for deploy
    needs = f"needs {version_text(MIN_DATABRICKS_CLI_VERSION)} or later"
    assert f"is v0.250.0; this project {needs}" in result.stdout

    write_executable(home / "bin" / "databricks", 'print("Databricks CLI v0.298.1")\n')
    result = quickstart("--yes")
    assert "ok    Databricks CLI v0.298.1" in result.stdout

    result = quickstart("--profile", "DEFAULT", UV="")  # and PATH holds no uv
    assert result.returncode == 1
    assert "uv is not installed" in result.stderr
    assert "astral.sh/uv/install.sh" in result.stderr


def test_on_a_terminal_it_asks_for_the_profile(home: Path, fake: FakeWorkspace) -> None:
    import pty  # POSIX only, like the terminal this test needs

    controller, terminal = pty.openpty()
    try:
        # The answers wait in the terminal's input: profile 1, then yes to the changes.
        os.write(controller, b"1\ny\n")
        process = subprocess.Popen(
            [SCRIPTS_DIR / "quickstart", "--env-file", home / ".env"],
            env=cli_env(home),
            cwd=home,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = process.communicate(timeout=CLI_TIMEOUT_SECONDS)
    finally:
        os.close(terminal)
        os.close(controller)
    assert process.returncode == 0, stdout + stderr
    assert "1) DEFAULT" in stdout and "2) rejected" in stdout
    assert "Proceed: create the MLflow experiment and write .env? [Y/n]" in stdout
    assert env_values(home)["DATABRICKS_CONFIG_PROFILE"] == "DEFAULT"
    assert len(experiments(fake).all()) == 1


def test_local_memory_schema_is_a_plain_identifier_of_the_user() -> None:
    schema = local_memory_schema("Ada.Lovelace+agents@example.com")
    assert schema.startswith("local_") and schema.endswith("_ada_lovelace_agents")
    assert len(local_memory_schema("x" * 100 + "@example.com")) == 63


def test_an_agent_with_memory_gets_its_local_schema(
    quickstart: Run, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local runs keep their memory in a schema of the developer's (the app has its own)."""
    monkeypatch.setattr(quickstart_module, "LAKEBASE_MEMORY", True)
    result = quickstart("--profile", "DEFAULT", "--yes")
    assert result.returncode == 0, output(result)
    env = EnvFile.load(home / ".env")
    assert env.get("LAKEBASE_SCHEMA") == local_memory_schema(USER)
    # A schema you chose is kept.
    env.set("LAKEBASE_SCHEMA", "my_schema")
    env.save()
    again = quickstart()
    assert again.returncode == 0, output(again)
    assert EnvFile.load(home / ".env").get("LAKEBASE_SCHEMA") == "my_schema"
