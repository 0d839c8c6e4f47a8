"""AGENTS.md in every rendered project names only commands, options and files that project has.

Coding assistants follow AGENTS.md literally: a command that does not exist, or a path that is
not there, sends them astray. For every prompt combination (the render matrix), each
`uv run <command> [--option ...]` it shows must be one of the project's `[project.scripts]`
(whose module defines each option) or a tool of its dev dependencies, and each backquoted
project path must exist.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from conftest import RenderedCombination

# `uv run` commands that are tools installed by the dev dependency group, not project scripts.
DEV_TOOLS = {"pytest", "ruff"}
UV_RUN = re.compile(r"uv run ([\w-]+)((?: [^\s`#&]+)*)")
BACKQUOTED = re.compile(r"`([^`\s]+)`")
# A backquoted word is a path of the project when it has a folder or a file extension.
PATH_LIKE = re.compile(r"^[\w.-]+(/[\w.-]*)+$|^[\w-]+\.(py|md|yml|yaml|json|toml|lock)$")


def uv_run_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, its --options) for every `uv run` in the text."""
    found = []
    for command, rest in UV_RUN.findall(text):
        options = [word.split("=")[0] for word in rest.split() if word.startswith("--")]
        found.append((command, options))
    return found


def script_module(project: Path, target: str) -> Path:
    module = target.split(":")[0]
    return project.joinpath(*module.split(".")).with_suffix(".py")


def check_agents_md(project: Path) -> list[str]:
    problems: list[str] = []
    agents_md = project / "AGENTS.md"
    if not agents_md.is_file():
        return ["AGENTS.md is missing"]
    text = agents_md.read_text(encoding="utf-8")
    claude_md = project / "CLAUDE.md"
    if not claude_md.is_file() or "@AGENTS.md" not in claude_md.read_text(encoding="utf-8"):
        problems.append("CLAUDE.md does not import AGENTS.md")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = pyproject["project"]["scripts"]
    dev = " ".join(pyproject.get("dependency-groups", {}).get("dev", []))
    commands = uv_run_commands(text)
    if not commands:
        problems.append("AGENTS.md names no `uv run` command")
    for command, options in commands:
        if command in DEV_TOOLS:
            if command not in dev:
                problems.append(f"uv run {command}: {command} is not a dev dependency")
            continue
        if command not in scripts:
            problems.append(f"uv run {command}: no such script in pyproject.toml")
            continue
        source = script_module(project, scripts[command]).read_text(encoding="utf-8")
        problems += [
            f"uv run {command} {option}: {scripts[command]} has no such option"
            for option in options
            if f'"{option}"' not in source
        ]
    for word in BACKQUOTED.findall(text):
        if PATH_LIKE.match(word) and not (project / word.rstrip("/")).exists():
            problems.append(f"`{word}` is not a file or folder of the project")
    return problems


def test_agents_md_names_what_the_project_has(rendered: RenderedCombination) -> None:
    problems = check_agents_md(rendered.project)
    assert not problems, "\n".join(problems)


def test_the_check_flags_each_rule(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "agent_cli").mkdir(parents=True)
    (project / "agent_cli" / "deploy.py").write_text('parser.add_argument("--target")\n')
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\n[project.scripts]\ndeploy = "agent_cli.deploy:main"\n'
        '[dependency-groups]\ndev = ["pytest>=8"]\n'
    )
    (project / "CLAUDE.md").write_text("@AGENTS.md\n")
    good = "`agent_cli/deploy.py`\n```\nuv run pytest\nuv run deploy --target prod\n```\n"
    (project / "AGENTS.md").write_text(good)
    assert check_agents_md(project) == []
    (project / "AGENTS.md").write_text(
        good + "uv run migrate\nuv run deploy --force\nuv run ruff check .\n`agent_server/x.py`\n"
    )
    assert check_agents_md(project) == [
        "uv run migrate: no such script in pyproject.toml",
        "uv run deploy --force: agent_cli.deploy:main has no such option",
        "uv run ruff: ruff is not a dev dependency",
        "`agent_server/x.py` is not a file or folder of the project",
    ]
    (project / "CLAUDE.md").write_text("see the other file\n")
    assert "CLAUDE.md does not import AGENTS.md" in check_agents_md(project)
