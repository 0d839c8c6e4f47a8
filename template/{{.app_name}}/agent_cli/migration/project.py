"""The project being migrated: where things go, what a previous run left, the async choice."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_cli.migration.errors import MigrationError

AGENT_FILE = "agent_server/agent.py"
MIGRATED_DIR = "agent_server/migrated"
# The original MLflow model, inside the package: its code, artifacts and configuration are
# deployed with the app and found from the package, whatever the working directory.
PACKAGED_MODEL_DIR = f"{MIGRATED_DIR}/model"
RECORD_FILE = f"{MIGRATED_DIR}/migration.json"
# The model as downloaded, kept beside the project for reference and for re-runs.
ORIGINAL_MODEL_DIR = "original_mlflow_model"
REPORT_FILE = "MIGRATION.md"
BUNDLE_FILE = "databricks.yml"
PYPROJECT_FILE = "pyproject.toml"
LOCK_FILE = "uv.lock"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Project:
    root: Path

    @staticmethod
    def at(root: Path) -> Project:
        root = root.resolve()
        for required in (PYPROJECT_FILE, BUNDLE_FILE, "agent_server"):
            if not (root / required).exists():
                raise MigrationError(
                    f"{root} is not a project generated from this template (it has no "
                    f"{required}): run migrate from the project, or pass --project-dir."
                )
        return Project(root)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def read_bytes(self, relative: str) -> bytes | None:
        path = self.path(relative)
        return path.read_bytes() if path.is_file() else None

    def read_text(self, relative: str) -> str | None:
        data = self.read_bytes(relative)
        return None if data is None else data.decode("utf-8")

    def record(self) -> dict[str, Any] | None:
        """What the previous migration recorded (migration.json), if there was one."""
        text = self.read_text(RECORD_FILE)
        if text is None:
            return None
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise MigrationError(f"{RECORD_FILE} is not valid JSON ({exc}): remove it.") from exc
        return record if isinstance(record, dict) else None

    def async_choice(self) -> bool:
        """The project's async choice: whether agent.py's @invoke handler is `async def`."""
        source = self.read_text(AGENT_FILE)
        if source is None:
            raise MigrationError(f"{AGENT_FILE} is missing: pass --async yes or --async no.")
        handler = invoke_handler(source)
        if handler is None:
            raise MigrationError(
                f"Cannot tell whether {AGENT_FILE} is async (no @invoke() function in it): "
                "pass --async yes or --async no."
            )
        return isinstance(handler, ast.AsyncFunctionDef)

    def agent_state(self) -> str:
        """'scaffold' (not migrated yet), 'generated' (by the last migration, unchanged since)
        or 'edited' (anything else, which a migration must not overwrite silently)."""
        data = self.read_bytes(AGENT_FILE)
        if data is None:
            return "missing"
        record = self.record() or {}
        if record.get("agent_sha256") == sha256(data):
            return "generated"
        if is_scaffold(data.decode("utf-8")):
            return "scaffold"
        return "edited"


def invoke_handler(source: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if any(_is_call_of(decorator, "invoke") for decorator in node.decorator_list):
                return node
    return None


def is_scaffold(source: str) -> bool:
    """The template's unmigrated agent.py: handlers that only raise NotMigratedError."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    raised = {
        node.exc.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and isinstance(node.exc.func, ast.Name)
    }
    return "NotMigratedError" in raised


def _is_call_of(node: ast.expr, name: str) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == name) or (
        isinstance(func, ast.Attribute) and func.attr == name
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` in one step, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def tree_digest(directory: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `directory` (caches excluded)."""
    if not directory.is_dir():
        return {}
    return {
        path.relative_to(directory).as_posix(): sha256(path.read_bytes())
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def replace_tree(source: Path, destination: Path) -> None:
    """Make `destination` a copy of `source`: copied beside it, then swapped in."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    try:
        shutil.copytree(
            source,
            staging / "tree",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        old = destination.with_name(f".{destination.name}.old")
        if destination.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(destination, old)
        os.replace(staging / "tree", destination)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_tree(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
