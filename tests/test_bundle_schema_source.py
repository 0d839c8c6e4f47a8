"""Where the bundle JSON Schema checks get the schema: BUNDLE_SCHEMA, else the Databricks CLI.

Without either, each such check is skipped with the way to enable it, except under CI=true,
where it fails: CI must never skip it.
"""

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import bundle_validation as bv
import pytest

SCHEMA = {"type": "object", "properties": {"bundle": {"type": "object"}}}


@pytest.fixture(autouse=True)
def _no_cached_schema() -> Iterator[None]:
    bv._schema_from_cli.cache_clear()
    yield
    bv._schema_from_cli.cache_clear()


def fake_cli(folder: Path, body: str) -> Path:
    """A `databricks` executable in `folder` whose `bundle schema` runs `body` (sh)."""
    cli = folder / "databricks"
    cli.write_text(f'#!/bin/sh\n[ "$1 $2" = "bundle schema" ] || exit 64\n{body}\n')
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    return cli


@pytest.fixture
def no_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(bv.BUNDLE_SCHEMA_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_the_environment_variable_comes_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    monkeypatch.setenv(bv.BUNDLE_SCHEMA_ENV, str(schema))
    fake_cli(tmp_path, "exit 1")  # never asked
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bv.bundle_schema_path() == schema
    assert bv.require_bundle_schema() == schema


@pytest.mark.usefixtures("no_source")
def test_else_the_cli_prints_it_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    cli_folder = tmp_path / "bin"
    cli_folder.mkdir()
    fake_cli(cli_folder, f"echo called >> {calls}\necho '{json.dumps(SCHEMA)}'")
    monkeypatch.setenv("PATH", str(cli_folder))
    first = bv.require_bundle_schema()
    assert json.loads(first.read_text()) == SCHEMA
    assert bv.bundle_schema_path() == first
    assert calls.read_text().splitlines() == ["called"]


@pytest.mark.usefixtures("no_source")
def test_a_failing_cli_is_an_error_that_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli_folder = tmp_path / "bin"
    cli_folder.mkdir()
    fake_cli(cli_folder, "echo 'not logged in' >&2; exit 1")
    monkeypatch.setenv("PATH", str(cli_folder))
    with pytest.raises(RuntimeError, match="bundle schema` failed: not logged in"):
        bv.bundle_schema_path()


@pytest.mark.usefixtures("no_source")
def test_with_neither_the_check_is_skipped_saying_how_to_enable_it() -> None:
    assert bv.bundle_schema_path() is None
    with pytest.raises(pytest.skip.Exception, match="set BUNDLE_SCHEMA to a file"):
        bv.require_bundle_schema()
    with pytest.raises(RuntimeError, match="no bundle JSON Schema"):
        bv.schema_errors({"bundle": {"name": "x"}})


@pytest.mark.usefixtures("no_source")
def test_with_neither_ci_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: the check must run"):
        bv.require_bundle_schema()
