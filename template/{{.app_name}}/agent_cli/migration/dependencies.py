"""The model's requirements.txt merged into pyproject.toml, through `uv add`.

A requirement the project already has is compared with the project's own specifier: when both
can hold, the project's pin stays (it is what the server is tested with); when they cannot, that
is a conflict, reported, and nothing is picked unless --on-conflict says which side wins. New
requirements are added as the model pinned them, so the app runs what Model Serving ran.

`uv add` runs on a copy of pyproject.toml (and uv.lock) in a scratch directory: the project is
only written once the whole migration is planned.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from agent_cli.migration.errors import MigrationError

UV_TIMEOUT_SECONDS = 600
ON_CONFLICT = ("stop", "project", "model")
# How `uv add` runs, by --frozen / --no-sync / default: edit only pyproject.toml; also update
# uv.lock; update uv.lock, then install into the project's environment.
DEPENDENCY_MODES = ("frozen", "lock", "sync")


@dataclass(frozen=True)
class Conflict:
    name: str
    project: str  # the project's requirement
    model: str  # the model's requirement

    def describe(self) -> str:
        return f"{self.name}: the project has `{self.project}`, the model `{self.model}`"


@dataclass
class DependencyPlan:
    add: list[str] = field(default_factory=list)  # requirements for `uv add`
    added: list[str] = field(default_factory=list)  # `add`, and what an earlier run added
    kept: list[tuple[str, str]] = field(default_factory=list)  # (project's, model's) that agree
    conflicts: list[Conflict] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # lines uv add cannot take
    on_conflict: str = "stop"

    @property
    def resolved(self) -> list[str]:
        """How each conflict was settled, for the report."""
        if self.on_conflict == "project":
            return [f"{c.describe()}: kept the project's" for c in self.conflicts]
        if self.on_conflict == "model":
            return [f"{c.describe()}: took the model's" for c in self.conflicts]
        return []


def project_requirements(pyproject_text: str) -> dict[str, tuple[str, Requirement]]:
    """The project's dependencies by canonical name: (the line as written, parsed)."""
    try:
        data = tomllib.loads(pyproject_text)
    except tomllib.TOMLDecodeError as exc:
        raise MigrationError(f"pyproject.toml is not valid TOML: {exc}") from exc
    result = {}
    for line in (data.get("project") or {}).get("dependencies") or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        result[canonicalize_name(requirement.name)] = (line, requirement)
    return result


def plan_dependencies(
    pyproject_text: str,
    model_requirements: list[str],
    on_conflict: str = "stop",
    previously_added: list[str] | tuple[str, ...] = (),
) -> DependencyPlan:
    """What to do with each of the model's requirements. `previously_added` (from the last
    run's record) are reported as added again, not as the project's own pins."""
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {ON_CONFLICT}")
    plan = DependencyPlan(on_conflict=on_conflict)
    ours = project_requirements(pyproject_text)
    seen: set[str] = set()
    for line in model_requirements:
        if line.startswith("-") or "://" in line.split("@", 1)[0] or _is_local_path(line):
            plan.unsupported.append(line)
            continue
        try:
            theirs = Requirement(line)
        except InvalidRequirement:
            plan.unsupported.append(line)
            continue
        name = canonicalize_name(theirs.name)
        if name in seen:
            continue
        seen.add(name)
        if name not in ours:
            plan.add.append(line)
            plan.added.append(line)
            continue
        written, mine = ours[name]
        if written == line and line in previously_added:
            plan.added.append(line)
            continue
        if theirs.url or mine.url or not specifiers_agree(mine.specifier, theirs.specifier):
            plan.conflicts.append(Conflict(theirs.name, written, line))
            if on_conflict == "model":
                plan.add.append(line)
                plan.added.append(line)
        else:
            plan.kept.append((written, line))
            if not set(theirs.extras) <= set(mine.extras):
                # Same versions, but the model needs extras: add them to the project's pin.
                merged = Requirement(str(mine))
                merged.extras = set(mine.extras) | set(theirs.extras)
                plan.add.append(str(merged))
                plan.added.append(str(merged))
    return plan


def specifiers_agree(ours: SpecifierSet, theirs: SpecifierSet) -> bool:
    """Whether some version satisfies both: tried on every version either side names."""
    if not str(ours) or not str(theirs):
        return True
    candidates = []
    for spec in (*ours, *theirs):
        try:
            version = Version(spec.version.rstrip(".*"))
        except InvalidVersion:
            return False
        candidates += [version, Version(f"{version.base_version}.post9999")]
    return any(
        ours.contains(v, prereleases=True) and theirs.contains(v, prereleases=True)
        for v in candidates
    )


def _is_local_path(line: str) -> bool:
    return line.startswith((".", "/", "~")) or line.endswith((".whl", ".tar.gz", ".zip"))


def uv_executable() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise MigrationError("uv is not on PATH: run migrate with `uv run migrate`.")
    return uv


def run_uv_add(
    project_root: Path, requirements: list[str], mode: str
) -> tuple[bytes, bytes | None]:
    """pyproject.toml (and uv.lock) after `uv add`, computed in a scratch copy.

    mode "frozen" edits pyproject.toml only (no resolution: fast and offline); otherwise uv
    resolves and updates uv.lock, and a failure to resolve is reported as a conflict.
    """
    pyproject = (project_root / "pyproject.toml").read_bytes()
    lock_path = project_root / "uv.lock"
    lock = lock_path.read_bytes() if lock_path.is_file() else None
    if not requirements:
        return pyproject, lock
    with tempfile.TemporaryDirectory(prefix="migrate-uv-") as scratch:
        work = Path(scratch)
        (work / "pyproject.toml").write_bytes(pyproject)
        if lock is not None:
            (work / "uv.lock").write_bytes(lock)
        readme = project_root / "README.md"
        if readme.is_file():
            shutil.copy(readme, work / "README.md")
        flags = ["--frozen"] if mode == "frozen" else ["--no-sync"]
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        try:
            result = subprocess.run(
                [uv_executable(), "add", "--quiet", *flags, *requirements],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=UV_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise MigrationError(f"uv add did not finish in {UV_TIMEOUT_SECONDS} s.") from exc
        if result.returncode != 0:
            raise MigrationError(
                "uv cannot add the model's requirements to the project's (a conflict between "
                f"them, or an index problem):\n{result.stderr.strip()}\nRequirements: "
                f"{' '.join(requirements)}. Settle it with --on-conflict, or edit "
                "pyproject.toml, then run migrate again."
            )
        new_lock = work / "uv.lock"
        return (
            (work / "pyproject.toml").read_bytes(),
            new_lock.read_bytes() if new_lock.is_file() else None,
        )


def sync_environment(project_root: Path) -> None:
    """Install the merged dependencies into the project's environment."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    result = subprocess.run(
        [uv_executable(), "sync", "--frozen", "--quiet"],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=UV_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, result.args, result.stdout, result.stderr
        )
