"""The whole migration as one plan: computed first, printed by --dry-run, applied only if complete.

Every check that can fail on bad input runs while planning, so a failed migration leaves the
project exactly as it was. Applying writes only what differs from what is there, which makes a
re-run with the same inputs change nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_cli.migration import bundle as bundle_yaml
from agent_cli.migration.dependencies import DependencyPlan, plan_dependencies, run_uv_add
from agent_cli.migration.entrypoint import render_adapter
from agent_cli.migration.errors import MigrationError
from agent_cli.migration.mlmodel import ModelInfo, read_model
from agent_cli.migration.project import (
    AGENT_FILE,
    BUNDLE_FILE,
    LOCK_FILE,
    ORIGINAL_MODEL_DIR,
    PACKAGED_MODEL_DIR,
    PYPROJECT_FILE,
    RECORD_FILE,
    Project,
    remove_tree,
    replace_tree,
    sha256,
    tree_digest,
    write_atomically,
)
from agent_cli.migration.resources import ResourceMapping, UnknownResourceType, map_resources
from agent_cli.migration.rewrite import RewriteRefused, rewrite
from agent_cli.migration.source import Source

GITIGNORE = ".gitignore"
# The template's tests of the unmigrated agent's 501 answer: they no longer hold once migrated.
SCAFFOLD_TEST = "tests/test_migration_scaffold.py"
GITIGNORE_ENTRY = f"/{ORIGINAL_MODEL_DIR}/"
GITIGNORE_ADDITION = (
    "\n# The model as downloaded by `uv run migrate` (the app uses its copy in\n"
    f"# {PACKAGED_MODEL_DIR}).\n{GITIGNORE_ENTRY}\n"
)
# Set by Databricks Apps for the app's own identity: nothing to carry over.
PLATFORM_ENV_VARS = frozenset(
    {"DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"}
)
SECRET_REFERENCE = re.compile(r"^\{\{\s*secrets/([^/\s]+)/([^}\s]+)\s*\}\}$")
# Top-level names the project itself imports: model code with these names would shadow them.
PROJECT_PACKAGES = frozenset({"agent_server", "agent_cli", "tests"})


@dataclass(frozen=True)
class Options:
    is_async: bool | None = None  # None: the project's choice
    rewrite: bool = False
    on_conflict: str = "stop"
    skip_unknown_resources: bool = False
    dependency_mode: str = "sync"  # "frozen", "lock" or "sync" (see dependencies.py)
    force: bool = False
    dry_run: bool = False


@dataclass
class Plan:
    project: Project
    source: Source
    model: ModelInfo
    options: Options
    is_async: bool
    async_origin: str  # "the project's choice" or "--async"
    mode: str  # "adapter" or "rewrite"
    mapping: ResourceMapping
    bundle: bundle_yaml.BundleChange
    dependencies: DependencyPlan
    files: dict[str, bytes] = field(default_factory=dict)  # project-relative path -> content
    trees: dict[str, Path] = field(default_factory=dict)  # project-relative dir -> copy of
    removed_trees: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what needs a person
    record: dict[str, Any] = field(default_factory=dict)

    def file_status(self, relative: str) -> str:
        current = self.project.read_bytes(relative)
        if current is None:
            return "create"
        return "unchanged" if current == self.files[relative] else "update"

    def tree_status(self, relative: str) -> str:
        destination = self.project.path(relative)
        if not destination.exists():
            return "create"
        same = tree_digest(destination) == tree_digest(self.trees[relative])
        return "unchanged" if same else "update"


def build_plan(project: Project, source: Source, options: Options) -> Plan:
    state = project.agent_state()
    if state == "edited" and not options.force:
        raise MigrationError(
            f"{AGENT_FILE} has changes that migrate did not make (it is neither the template's "
            "scaffold nor the file the last migration wrote). Pass --force to replace it."
        )
    if options.is_async is None:
        is_async, async_origin = project.async_choice(), "the project's choice"
    else:
        is_async, async_origin = options.is_async, "--async"

    model = read_model(source.directory)
    record = project.record() or {}
    try:
        mapping = map_resources(
            model.resources, model.auth_policy, skip_unknown=options.skip_unknown_resources
        )
    except UnknownResourceType as exc:
        raise MigrationError(str(exc)) from exc
    except ValueError as exc:
        raise MigrationError(f"The model's MLmodel resources are malformed: {exc}") from exc
    bundle_text = project.read_text(BUNDLE_FILE) or ""
    bundle_change = bundle_yaml.update_bundle(bundle_text, mapping, record)

    pyproject_text = project.read_text(PYPROJECT_FILE) or ""
    dependencies = plan_dependencies(
        pyproject_text,
        model.requirements,
        options.on_conflict,
        previously_added=record.get("dependencies_added") or (),
    )
    if dependencies.conflicts and options.on_conflict == "stop":
        listed = "\n  ".join(c.describe() for c in dependencies.conflicts)
        raise MigrationError(
            "The model's requirements conflict with the project's:\n  "
            f"{listed}\nmigrate does not pick a side by itself: run it again with "
            "--on-conflict project (keep the project's pins; recommended for mlflow, which the "
            "agent server needs at the project's version) or --on-conflict model."
        )

    mode = "rewrite" if options.rewrite else "adapter"
    if options.rewrite:
        try:
            agent_source = format_python(rewrite(model, is_async=is_async), project.root)
        except RewriteRefused as exc:
            reasons = "\n  ".join(exc.reasons)
            raise MigrationError(
                "--rewrite is not safe for this model, so nothing was changed:\n  "
                f"{reasons}\nWithout --rewrite, migrate serves the original agent unchanged "
                "through an adapter."
            ) from exc
    else:
        agent_source = render_adapter(is_async=is_async, pickled=not model.from_code)

    plan = Plan(
        project=project,
        source=source,
        model=model,
        options=options,
        is_async=is_async,
        async_origin=async_origin,
        mode=mode,
        mapping=mapping,
        bundle=bundle_change,
        dependencies=dependencies,
    )
    plan.notes = notes_for(model, source, mapping, dependencies)

    original = project.path(ORIGINAL_MODEL_DIR)
    if source.directory.resolve() != original.resolve():
        plan.trees[ORIGINAL_MODEL_DIR] = source.directory
    if mode == "adapter":
        plan.trees[PACKAGED_MODEL_DIR] = source.directory
    elif project.path(PACKAGED_MODEL_DIR).exists():
        plan.removed_trees.append(PACKAGED_MODEL_DIR)

    if project.path(SCAFFOLD_TEST).is_file():
        plan.removed_files.append(SCAFFOLD_TEST)

    agent_bytes = agent_source.encode("utf-8")
    plan.files[AGENT_FILE] = agent_bytes
    plan.files[BUNDLE_FILE] = bundle_change.text.encode("utf-8")
    if dependencies.add and not options.dry_run:
        pyproject, lock = run_uv_add(project.root, dependencies.add, options.dependency_mode)
        plan.files[PYPROJECT_FILE] = pyproject
        if lock is not None:
            plan.files[LOCK_FILE] = lock
    gitignore = project.read_text(GITIGNORE)
    if gitignore is not None and GITIGNORE_ENTRY not in gitignore.splitlines():
        plan.files[GITIGNORE] = (gitignore.rstrip("\n") + "\n" + GITIGNORE_ADDITION).encode("utf-8")

    plan.record = {
        "source": {
            "kind": source.kind,
            "label": source.label,
            "model_uri": source.model_uri,
            "endpoint": source.endpoint,
        },
        "async": is_async,
        "mode": mode,
        "agent_sha256": sha256(agent_bytes),
        "resources": bundle_change.resources,
        "user_api_scopes": bundle_change.user_api_scopes,
        "llm_variable": bundle_change.llm_variable,
        "dependencies_added": dependencies.added,
    }
    plan.files[RECORD_FILE] = (json.dumps(plan.record, indent=2, sort_keys=True) + "\n").encode()
    return plan


def notes_for(
    model: ModelInfo, source: Source, mapping: ResourceMapping, dependencies: DependencyPlan
) -> list[str]:
    notes = list(mapping.notes)
    for name, value in sorted(source.environment_vars.items()):
        secret = SECRET_REFERENCE.match(value)
        if secret:
            notes.append(
                f"The endpoint set `{name}` from secret `{secret[1]}/{secret[2]}`: add a "
                f"`secret` app resource (scope {secret[1]}, key {secret[2]}, permission READ) "
                f"and an env entry `{name}` with `value_from` it, in databricks.yml and app.yaml."
            )
        else:
            notes.append(
                f"The endpoint set `{name}`: add it to the env of databricks.yml and app.yaml."
            )
    for name in model.env_vars:
        if name not in PLATFORM_ENV_VARS and name not in source.environment_vars:
            notes.append(
                f"The model read `{name}` from the environment when it was logged: set it on "
                "the app if it needs it (a secret app resource for credentials)."
            )
    for line in dependencies.unsupported:
        notes.append(f"Requirement `{line}` cannot be added with uv add: add it by hand.")
    notes.extend(dependencies.resolved)
    if model.python_version and _major_minor(model.python_version) < (3, 11):
        notes.append(
            f"The model was logged with Python {model.python_version}; the app runs Python 3.11+."
        )
    if model.code_dir:
        code = model.directory / model.code_dir
        clashes = sorted(
            p.stem for p in code.iterdir() if p.stem in PROJECT_PACKAGES and not p.name[0] == "."
        )
        if clashes:
            notes.append(
                f"The model's code has top-level modules named {', '.join(clashes)}, which "
                "shadow the project's own: rename them."
            )
    if _mentions(model, "ModelServingUserCredentials"):
        notes.append(
            "The code uses ModelServingUserCredentials, which works only in Model Serving: on "
            "Apps build the user's client from the x-forwarded-access-token request header."
        )
    if not model.from_code:
        notes.append(
            "The model is a pickle: the app loads it with MLFLOW_ALLOW_PICKLE_DESERIALIZATION "
            "set, and needs the same cloudpickle and Python versions it was logged with."
        )
    if model.input_example is None:
        notes.append("The model has no input_example.json: test the app with your own request.")
    return notes


def _major_minor(version: str) -> tuple[int, int]:
    parts = re.findall(r"\d+", version)
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 else (99, 99)


def _mentions(model: ModelInfo, text: str) -> bool:
    for relative in model.files():
        if relative.endswith(".py"):
            path = model.directory / relative
            if text in path.read_text(encoding="utf-8", errors="replace"):
                return True
    return False


def format_python(source: str, project_root: Path) -> str:
    """`source` with imports sorted, unused ones removed and ruff's formatting, when ruff is
    installed (it is in the project's dev group); deterministic either way."""
    ruff = _ruff()
    if ruff is None:
        return source
    stdin = f"{project_root / AGENT_FILE}"
    for args in (
        ["check", "--fix", "--select", "I,F401", "--exit-zero", "--quiet"],
        ["format", "--quiet"],
    ):
        result = subprocess.run(
            [ruff, *args, "--stdin-filename", stdin, "-"],
            input=source,
            cwd=project_root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 0 and result.stdout:
            source = result.stdout
    return source


def _ruff() -> str | None:
    try:
        from ruff.__main__ import find_ruff_bin

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("ruff")


def apply(plan: Plan) -> list[str]:
    """Write the plan into the project; returns what changed."""
    changed = []
    for relative, source in plan.trees.items():
        if plan.tree_status(relative) != "unchanged":
            replace_tree(source, plan.project.path(relative))
            changed.append(relative + "/")
    for relative in plan.removed_trees:
        remove_tree(plan.project.path(relative))
        changed.append(relative + "/ (removed)")
    for relative, data in plan.files.items():
        if plan.file_status(relative) != "unchanged":
            write_atomically(plan.project.path(relative), data)
            changed.append(relative)
    for relative in plan.removed_files:
        plan.project.path(relative).unlink(missing_ok=True)
        changed.append(relative + " (removed)")
    return changed


def describe(plan: Plan) -> str:
    """The plan as --dry-run prints it."""
    lines = [
        f"Source: {plan.source.label}",
        f"Model: a ResponsesAgent {plan.model.kind}, MLflow {plan.model.mlflow_version}",
        f"Entry point: agent_server/agent.py, {plan.mode} "
        f"({'async' if plan.is_async else 'sync'} handlers, {plan.async_origin})",
        "Files:",
    ]
    for relative in sorted(plan.trees):
        lines.append(f"  {plan.tree_status(relative):9} {relative}/")
    for relative in plan.removed_trees:
        lines.append(f"  {'remove':9} {relative}/")
    for relative in sorted(plan.files):
        lines.append(f"  {plan.file_status(relative):9} {relative}")
    for relative in plan.removed_files:
        lines.append(f"  {'remove':9} {relative} (tests the unmigrated scaffold)")
    lines.append("App resources (databricks.yml):")
    for mapped in plan.mapping.mapped:
        lines.append(f"  {resource_line(plan, mapped)}")
    if not plan.mapping.mapped:
        lines.append("  (the model declares none)")
    if plan.bundle.user_api_scopes:
        lines.append(f"  user_api_scopes: {', '.join(plan.bundle.user_api_scopes)}")
    lines.append("Dependencies (pyproject.toml):")
    for requirement in plan.dependencies.added:
        lines.append(f"  add  {requirement}")
    for mine, theirs in plan.dependencies.kept:
        lines.append(f"  keep {mine} (the model's {theirs} agrees)")
    for resolved in plan.dependencies.resolved:
        lines.append(f"  conflict: {resolved}")
    if plan.options.dry_run and plan.dependencies.add:
        lines.append("  (dry run: uv was not run)")
    if plan.notes:
        lines.append("Needs a person:")
        lines += [f"  - {note}" for note in plan.notes]
    return "\n".join(lines)


def resource_line(plan: Plan, mapped: Any) -> str:
    declared = mapped.declared
    what = f"{declared.type} {declared.name}"
    if mapped.entry is None:
        return f"{what}: on behalf of the user -> user_api_scopes {', '.join(mapped.scopes)}"
    llm = plan.bundle.llm_variable
    if (
        llm
        and declared.type == "serving_endpoint"
        and llm["value"] == declared.name
        and mapped.entry["name"] not in plan.bundle.resources
    ):
        return f"{what} -> serving-endpoint (variable serving_endpoint), CAN_QUERY"
    kind = next(k for k in mapped.entry if k not in ("name", "description"))
    spec = mapped.entry[kind]
    return f"{what} -> {mapped.entry['name']}: {kind}, {spec['permission']}"
