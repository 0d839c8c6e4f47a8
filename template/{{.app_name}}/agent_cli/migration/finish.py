"""`uv run migrate --finish`: once the agent is migrated, remove the migration machinery.

Afterwards the project is one with a hand-written agent: no `migrate` command, no migration
package, tests, dependencies, downloaded original model or report, and a README and AGENTS.md
that describe the migrated agent rather than the move.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from agent_cli.migration.errors import MigrationError, StepFailed
from agent_cli.migration.mlmodel import read_model
from agent_cli.migration.planner import GITIGNORE, GITIGNORE_ADDITION, SCAFFOLD_TEST
from agent_cli.migration.project import (
    ORIGINAL_MODEL_DIR,
    PACKAGED_MODEL_DIR,
    PYPROJECT_FILE,
    RECORD_FILE,
    REPORT_FILE,
    invoke_handler,
    is_scaffold,
    write_atomically,
)
from agent_cli.migration.verify import verify

AGENT_FILE = "agent_server/agent.py"
README_FILE = "README.md"
AGENTS_FILE = "AGENTS.md"
ERRORS_FILE = "agent_server/runtime/errors.py"
# The scaffold's error (its agent.py raised it until the migration): a project rendered for a
# hand-written agent has no such class.
NOT_MIGRATED_ERROR = re.compile(
    r"\n\nclass NotMigratedError\(AgentError\):\n.*?\n(?=\n\n|\Z)", re.DOTALL
)
# Only the migration uses these; the agent's own code never imports them. The scaffold's tests
# are gone already after a migration, unless a copy of them was kept.
REMOVED_PATHS = (
    "agent_cli/migration",
    "tests/migration",
    SCAFFOLD_TEST,
    ORIGINAL_MODEL_DIR,
    REPORT_FILE,
    RECORD_FILE,
)
# pyproject.toml lines the template adds for the migration alone: the `migrate` script, its
# runtime dependencies and the dev dependencies of tests/migration, with their comments. A pin
# the model's requirements changed no longer matches, and stays.
MIGRATION_PYPROJECT_LINES = (
    re.compile(r'\s*migrate = "agent_cli\.migration\.cli:main"'),
    re.compile(r"\s*# `uv run migrate` \(agent_cli/migration\).*"),
    re.compile(r"\s*# specifiers\."),
    re.compile(r'\s*"ruamel\.yaml>=0\.18",'),
    re.compile(r'\s*"packaging>=23\.2",'),
)
# "migrated" stays: agent_server/migrated/ holds the agent's code.
MIGRATION_MENTION = re.compile(r"migrate\b|migration", re.IGNORECASE)
MIGRATION_DEV_GROUP_START = re.compile(r"\s*# tests/migration logs real agents.*")
MIGRATED_SECTION = """## The migrated agent

`agent_server/agent.py` serves the agent moved from Model Serving: its `@invoke` and `@stream`
handlers call the original code, kept with its artifacts in `agent_server/migrated/model/`. Change
it as any other agent; `uv run preflight` sends `input_example.json` through the local server.

"""
# The same, for an agent rewritten into agent.py itself (`migrate --rewrite`): no packaged model.
REWRITTEN_SECTION = """## The migrated agent

`agent_server/agent.py` is the agent moved from Model Serving, rewritten as its `@invoke` and
`@stream` handlers. Change it as any other agent; `uv run preflight` sends `input_example.json`
through the local server.

"""


@dataclass
class FinishPlan:
    removals: list[str] = field(default_factory=list)
    rewrites: dict[str, bytes] = field(default_factory=dict)

    def describe(self) -> str:
        lines = ["Would remove:"] + [f"  {path}" for path in self.removals]
        lines += ["Would rewrite:"] + [f"  {path}" for path in sorted(self.rewrites)]
        return "\n".join(lines)


def check_migrated(root: Path) -> None:
    agent = root / AGENT_FILE
    source = agent.read_text(encoding="utf-8") if agent.is_file() else ""
    if not source or is_scaffold(source):
        raise MigrationError(
            f"{AGENT_FILE} is still the scaffold: migrate the agent first (uv run migrate ...)."
        )
    if invoke_handler(source) is None:
        raise MigrationError(f"{AGENT_FILE} has no @invoke handler: there is no agent to serve.")


def check_verification(root: Path) -> None:
    """The migration's own verification: the original model and the app agree on its example."""
    original = root / ORIGINAL_MODEL_DIR
    if not original.is_dir():
        raise MigrationError(
            f"{ORIGINAL_MODEL_DIR}/ is missing, so the migrated agent cannot be verified "
            "(--force finishes without verification)."
        )
    model = read_model(original)
    print("Verifying: the input example through the original model and the migrated app...")
    result = verify(root, original, model.input_example, pickled=not model.from_code)
    if not result.passed:
        raise MigrationError(
            f"the verification {result.status}: "
            + "; ".join(result.details)
            + " (--force finishes without verification)."
        )


def pyproject_without_migration(text: str) -> str:
    kept: list[str] = []
    in_dev_extras = False
    for line in text.splitlines(keepends=True):
        if MIGRATION_DEV_GROUP_START.fullmatch(line.rstrip("\n")):
            in_dev_extras = True
        if in_dev_extras:
            if line.strip() == "]":
                in_dev_extras = False
            else:
                continue
        if any(pattern.fullmatch(line.rstrip("\n")) for pattern in MIGRATION_PYPROJECT_LINES):
            continue
        kept.append(line)
    return "".join(kept)


def readme_without_migration(text: str, section: str = MIGRATED_SECTION) -> str:
    text = text.replace(
        "The landing place for an MLflow `ResponsesAgent` moving from Databricks Model Serving to",
        "An MLflow `ResponsesAgent` moved from Databricks Model Serving to",
    ).replace("`predict_stream()` become the", "`predict_stream()` became the")
    text = re.sub(r"Until the agent is migrated, preflight fails[^\n]*\n", "", text)
    text = re.sub(
        r", an unreachable workspace, or this scaffold's .*?\(#migrating-from-model-serving\)\)",
        " or an unreachable workspace",
        text,
        flags=re.DOTALL,
    )
    return re.sub(
        r"## Migrating from Model Serving\n.*?(?=^## |\Z)",
        section,
        text,
        flags=re.DOTALL | re.MULTILINE,
    )


def gitignore_without_migration(text: str) -> str:
    """Without the entry the migration added for the downloaded model (gone now too)."""
    return text.replace(GITIGNORE_ADDITION, "", 1)


def errors_without_scaffold(text: str) -> str:
    return NOT_MIGRATED_ERROR.sub("", text, count=1)


def uses_not_migrated_error(root: Path) -> bool:
    """Whether the agent's code still names the scaffold's error (then it stays)."""
    return any(
        "NotMigratedError" in path.read_text(encoding="utf-8", errors="replace")
        for path in (root / "agent_server").rglob("*.py")
        if path != root / ERRORS_FILE
    )


def agents_without_migration(text: str) -> str:
    return "".join(
        line for line in text.splitlines(keepends=True) if not MIGRATION_MENTION.search(line)
    )


def readme_section(root: Path) -> str:
    packaged = (root / PACKAGED_MODEL_DIR).is_dir()
    return MIGRATED_SECTION if packaged else REWRITTEN_SECTION


def build_finish_plan(root: Path) -> FinishPlan:
    plan = FinishPlan(removals=[path for path in REMOVED_PATHS if (root / path).exists()])
    for name, rewrite in (
        (PYPROJECT_FILE, pyproject_without_migration),
        (README_FILE, partial(readme_without_migration, section=readme_section(root))),
        (AGENTS_FILE, agents_without_migration),
        (GITIGNORE, gitignore_without_migration),
        (ERRORS_FILE, errors_without_scaffold),
    ):
        path = root / name
        if name == ERRORS_FILE and uses_not_migrated_error(root):
            continue
        if path.is_file():
            before = path.read_text(encoding="utf-8")
            after = rewrite(before)
            if after != before:
                plan.rewrites[name] = after.encode("utf-8")
    return plan


def update_environment(root: Path, dependency_mode: str) -> None:
    """uv sync (or only uv lock), so that the environment loses what the migration needed."""
    if dependency_mode == "frozen":
        return
    command = ["uv", "sync"] if dependency_mode == "sync" else ["uv", "lock"]
    try:
        subprocess.run(command, cwd=root, check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise StepFailed(
            f"The migration machinery was removed, but `{' '.join(command)}` failed: "
            f"{getattr(exc, 'stderr', exc)}"
        ) from exc


def finish(root: Path, *, force: bool, dry_run: bool, dependency_mode: str) -> int:
    check_migrated(root)
    plan = build_finish_plan(root)
    if dry_run:
        print(plan.describe())
        print("\nDry run: nothing was changed.")
        return 0
    if not force:
        check_verification(root)
    for name, data in plan.rewrites.items():
        write_atomically(root / name, data)
    for relative in plan.removals:
        path = root / relative
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    update_environment(root, dependency_mode)
    print(plan.describe().replace("Would remove", "Removed").replace("Would rewrite", "Rewrote"))
    return 0
