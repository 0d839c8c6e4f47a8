"""Helpers of the migration tests: project copies, the migrate command, the migrated server.

Migrating copies code into agent_server/ and edits pyproject.toml and databricks.yml, so every
migration here runs on a copy of this project in a temporary directory, never on the project
under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import pytest
import regex
import yaml

from agent_cli.local_server import running
from tests.fake_workspace import ENV_KEYS_TO_REMOVE, FakeWorkspace
from tests.support import BOOT_TIMEOUT_SECONDS, PROJECT_ROOT, read_sse, server_env

MIGRATE_TIMEOUT_SECONDS = 600
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "mlflow.db", "mlruns", ".env"
)
BUNDLE_SCHEMA_ENV = "BUNDLE_SCHEMA"
BUNDLE_SCHEMA_HINT = (
    "set BUNDLE_SCHEMA to the bundle JSON Schema, the output of `databricks bundle schema` "
    "(e.g. `databricks bundle schema > /tmp/bundle-schema.json && "
    "BUNDLE_SCHEMA=/tmp/bundle-schema.json uv run pytest`)"
)


def copy_project(destination: Path) -> Path:
    """A copy of this project (sources only: no virtualenv, caches or local stores)."""
    shutil.copytree(PROJECT_ROOT, destination, ignore=COPY_IGNORE, symlinks=True)
    return destination


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes, for byte-for-byte comparisons."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def tree_differences(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> list[str]:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    return [f"+{p}" for p in added] + [f"-{p}" for p in removed] + [f"~{p}" for p in changed]


def migrate_env(fake: FakeWorkspace, tracking_uri: str | None = None) -> dict[str, str]:
    """The environment of `uv run migrate` in the tests: Databricks clients on the fake, the
    local MLflow tracking store and registry, no .env, no bytecode written into the copy."""
    extra = {**fake.env(), "AGENT_ENV_FILE": "/dev/null", "PYTHONDONTWRITEBYTECODE": "1"}
    if tracking_uri is not None:
        extra["MLFLOW_TRACKING_URI"] = tracking_uri
        extra["MLFLOW_REGISTRY_URI"] = tracking_uri
    return server_env(extra, remove=ENV_KEYS_TO_REMOVE)


def run_migrate(
    project: Path, *args: str, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """`uv run migrate ARGS` in `project`: the console script's module, run by this Python."""
    return subprocess.run(
        [sys.executable, "-m", "agent_cli.migration.cli", "--project-dir", str(project), *args],
        cwd=project,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT_SECONDS,
        check=False,
    )


@contextlib.contextmanager
def migrated_app(
    project: Path, fake: FakeWorkspace, log_path: Path, cwd: Path | None = None
) -> Iterator[str]:
    """The migrated project's server (`start-server`) against the fake workspace.

    With `cwd`, the server runs from that directory, with the project importable through
    PYTHONPATH: whatever the migrated code reads must then resolve from the package.
    """
    env = server_env(
        {
            **fake.env(),
            "AGENT_ENV_FILE": "/dev/null",
            "PYTHONPATH": str(project),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        remove=ENV_KEYS_TO_REMOVE,
    )
    with running(project, env, BOOT_TIMEOUT_SECONDS, log_path=log_path, cwd=cwd) as server:
        yield server.url


def invoke(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{url}/invocations", json={**body, "stream": False})
    assert response.status_code == 200, response.text
    return response.json()


def stream_events(client: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", f"{url}/invocations", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        events = read_sse(response)
    assert events[-1] == "[DONE]", events
    errors = [e for e in events[:-1] if "error" in e]
    assert not errors, errors
    return events[:-1]


def done_items(events: list[Any]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e.get("type") == "response.output_item.done"]


def without_ids(value: Any) -> Any:
    """`value` without "id" fields: agents draw item ids at random (uuid4), the rest must match."""
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def bundle_app(project: Path) -> dict[str, Any]:
    document = yaml.safe_load((project / "databricks.yml").read_text())
    [app] = document["resources"]["apps"].values()
    return app


def bundle_schema_errors(document: Any) -> list[str]:
    """Violations of the bundle JSON Schema ($BUNDLE_SCHEMA, else `databricks bundle schema`).

    With neither, the check is skipped saying how to get the schema; under CI=true (GitHub
    Actions sets it) it fails instead: CI must run it.
    """
    schema = _bundle_schema()
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)

    def pattern(validator: Any, expected: str, instance: Any, _: Any) -> Iterator[Any]:
        # The schema's patterns use \p{L} and \p{N}, which only the `regex` package knows.
        if validator.is_type(instance, "string") and not regex.search(expected, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {expected!r}")

    validator = jsonschema.validators.extend(base, validators={"pattern": pattern})(schema)
    messages = []
    for error in validator.iter_errors(document):
        # Most values are `oneOf: [<the schema>, <a ${var...} string>]`: say what failed inside.
        detail = jsonschema.exceptions.best_match(error.context) if error.context else error
        where = ".".join(str(p) for p in error.absolute_path) or "<root>"
        messages.append(f"{where}: {detail.message}")
    return messages


_SCHEMA_CACHE: dict[str, Any] = {}


def _bundle_schema() -> Any:
    if "schema" in _SCHEMA_CACHE:
        return _SCHEMA_CACHE["schema"]
    path = os.environ.get(BUNDLE_SCHEMA_ENV)
    if path:
        if not Path(path).is_file():
            raise AssertionError(
                f"{BUNDLE_SCHEMA_ENV}={path} is not a file (cwd {Path.cwd()}): {BUNDLE_SCHEMA_HINT}"
            )
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    elif cli := shutil.which("databricks"):
        result = subprocess.run(
            [cli, "bundle", "schema"], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"`databricks bundle schema` failed: {result.stderr}")
        schema = json.loads(result.stdout)
    else:
        reason = f"no bundle JSON Schema for this check: {BUNDLE_SCHEMA_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the check must run)")
        pytest.skip(reason)
    _SCHEMA_CACHE["schema"] = schema
    return schema
