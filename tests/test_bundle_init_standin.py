"""Checks of the offline `databricks bundle init` stand-in.

The Go program in tests/bundle_init re-implements the CLI's non-interactive
`bundle init` so the template can be rendered without the real CLI. Its own
Go tests cover each rendering rule; this module runs them (plus `go vet` and
`gofmt`) and checks the `tests/bundle-init` wrapper end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
STANDIN_DIR = TESTS_DIR / "bundle_init"
WRAPPER = TESTS_DIR / "bundle-init"
FIXTURES = STANDIN_DIR / "testdata"

# Variables that change what the wrapper or the stand-in does; cleared so the
# caller's environment cannot leak into these checks.
_KNOBS = (
    "DATABRICKS_CLI",
    "BUNDLE_INIT_STRICT_CONFIG",
    "DATABRICKS_HOST",
    "DATABRICKS_BUNDLE_INIT_USER_NAME",
    "DATABRICKS_BUNDLE_INIT_DISPLAY_NAME",
    "DATABRICKS_BUNDLE_INIT_DEFAULT_CATALOG",
    "DATABRICKS_BUNDLE_INIT_RECORD_DEPLOYMENT_HISTORY",
    "DATABRICKS_BUNDLE_INIT_WAREHOUSE_ID",
    "BUNDLE_INIT_CLI_VERSION",
)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        pytest.fail(
            "Go is required for the bundle-init stand-in; install Go: apt-get install -y golang-go"
        )
    return go


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def wrapper_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the wrapper: a private binary cache, Go's usual build cache."""
    env = {k: v for k, v in os.environ.items() if k not in _KNOBS}
    gocache = _run([_go(), "env", "GOCACHE"], cwd=STANDIN_DIR).stdout.strip()
    if gocache and gocache != "off":
        env["GOCACHE"] = gocache  # keep compiles warm despite the new XDG_CACHE_HOME
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    return env


def _init(
    env: dict[str, str], *args: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return _run([str(WRAPPER), *map(str, args)], cwd=cwd or TESTS_DIR, env=env)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_go_unit_tests_pass() -> None:
    result = _run([_go(), "test", "-count=1", "./..."], cwd=STANDIN_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_go_vet_and_gofmt_are_clean() -> None:
    vet = _run([_go(), "vet", "./..."], cwd=STANDIN_DIR)
    assert vet.returncode == 0, vet.stdout + vet.stderr
    gofmt = shutil.which("gofmt") or str(Path(_go()).resolve().parent / "gofmt")
    fmt = _run([gofmt, "-l", "."], cwd=STANDIN_DIR)
    assert fmt.returncode == 0, fmt.stderr
    assert fmt.stdout == "", f"files need gofmt: {fmt.stdout}"


def test_wrapper_renders_template(wrapper_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"project_name": "demo"}))
    out = tmp_path / "out"

    result = _init(
        wrapper_env, FIXTURES / "basic", "--config-file", config, "--output-dir", out, "-o", "json"
    )

    assert result.returncode == 0, result.stderr
    expected = [
        "demo/.gitignore",
        "demo/AGENTS.md",
        "demo/CLAUDE.md",
        "demo/README.md",
        "demo/blank.txt",
        "demo/databricks.yml",
        "demo/double.tmpl",
        "demo/empty.txt",
        "demo/src/demo/main.py",
        "demo/verbatim.txt",
    ]
    assert _files(out) == expected
    assert json.loads(result.stdout) == {"outputs": expected}
    assert (out / "demo/src/demo/main.py").read_text() == 'print("hello demo")\n'
    assert result.stderr == "Welcome to the BASIC fixture\nCreated 'demo' (hello demo)\n"


def test_wrapper_reuses_cached_binary(wrapper_env: dict[str, str], tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert (
            _init(wrapper_env, FIXTURES / "order", "--output-dir", tmp_path / name).returncode == 0
        )
    cache = Path(wrapper_env["XDG_CACHE_HOME"]) / "agent-app-template"
    assert len(list(cache.glob("bundle-init-*"))) == 1


def test_conflict_leaves_output_untouched(wrapper_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    existing = out / "my_project" / "README.md"
    existing.parent.mkdir(parents=True)
    existing.write_text("mine\n")

    result = _init(wrapper_env, FIXTURES / "basic", "--output-dir", out)

    assert result.returncode != 0
    assert result.stderr.endswith(
        "Error: failed to initialize template, one or more files already exist: "
        "my_project/README.md\n"
    )
    assert _files(out) == ["my_project/README.md"]
    assert existing.read_text() == "mine\n"


def test_unknown_config_key_is_dropped_like_the_cli(
    wrapper_env: dict[str, str], tmp_path: Path
) -> None:
    # databricks/cli libs/template/config.go, assignValuesFromFile: keys that are not schema
    # properties are skipped.
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"project_name": "demo", "include_notebook": "yes"}))
    out = tmp_path / "out"

    result = _init(wrapper_env, FIXTURES / "basic", "--config-file", config, "--output-dir", out)

    assert result.returncode == 0, result.stderr
    assert (out / "demo").is_dir(), _files(out)


def test_unknown_config_key_is_rejected_when_strict(
    wrapper_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"project_name": "demo", "include_notebook": "yes"}))
    out = tmp_path / "out"
    env = {**wrapper_env, "BUNDLE_INIT_STRICT_CONFIG": "1"}

    result = _init(env, FIXTURES / "basic", "--config-file", config, "--output-dir", out)

    assert result.returncode != 0
    assert result.stderr == (
        f"Error: failed to load config from file {config}: "
        'unknown property "include_notebook" (not defined in the template schema)\n'
    )
    assert not out.exists()


def test_default_success_message_and_cwd_output(
    wrapper_env: dict[str, str], tmp_path: Path
) -> None:
    result = _init(wrapper_env, FIXTURES / "order", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == "✨ Successfully initialized template\n"
    assert (tmp_path / "chain.txt").read_text() == "baecd\n"


def test_databricks_cli_override(wrapper_env: dict[str, str], tmp_path: Path) -> None:
    record = tmp_path / "args.txt"
    fake = tmp_path / "databricks"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\necho fake-cli\n')
    fake.chmod(0o755)
    env = {**wrapper_env, "DATABRICKS_CLI": str(fake)}

    result = _init(env, "some/template", "--config-file", "in.json", "--output-dir", "out dir")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "fake-cli\n"
    assert record.read_text().splitlines() == [
        "bundle",
        "init",
        "some/template",
        "--config-file",
        "in.json",
        "--output-dir",
        "out dir",
    ]


def test_databricks_cli_override_must_be_executable(
    wrapper_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**wrapper_env, "DATABRICKS_CLI": str(tmp_path / "missing-databricks")}

    result = _init(env, FIXTURES / "basic")

    assert result.returncode == 127
    assert "is not an executable" in result.stderr
