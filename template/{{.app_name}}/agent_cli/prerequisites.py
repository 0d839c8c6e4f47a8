"""The tools this project needs on the developer's machine: uv, and the Databricks CLI.

uv runs everything (`uv run ...`). The Databricks CLI logs in (`databricks auth login`) and
deploys (`databricks bundle ...`); local runs work without it once a profile exists.

Minimum CLI version: v0.298.0, the template's own `min_databricks_cli_version` (the version
`databricks bundle init` already required to generate this project). It is the first release
whose bundles know the `app` app resource with `name` and `permission` (another app as a
resource; databricks/cli#4984), and it has the rest databricks.yml and `uv run deploy` use: apps as
bundle resources with inline `config` (databricks/cli#1928), `bundle deployment bind` for apps
(#1946), `bundle run` retrying an app deployment that collides with one in progress (#2153),
and the deployer added to every permission list as user or service principal (#3904). So the
version that generated the project also deploys it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

MIN_DATABRICKS_CLI_VERSION = (0, 298, 0)
VERSION_TIMEOUT_SECONDS = 15

UV_INSTALL_HINT = "install uv: curl -LsSf https://astral.sh/uv/install.sh | sh"
CLI_INSTALL_HINT = (
    "install the Databricks CLI: "
    "curl -fsSL https://raw.githubusercontent.com/databricks/setup-cli/main/install.sh | sh "
    "(or brew tap databricks/tap && brew install databricks); "
    "see https://docs.databricks.com/dev-tools/cli/install.html"
)

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(\S*)")


def version_text(version: tuple[int, int, int]) -> str:
    return "v" + ".".join(map(str, version))


@dataclass(frozen=True)
class Tool:
    name: str
    path: str | None  # None: not on PATH
    version: tuple[int, int, int] | None  # None: unknown
    development_build: bool = False

    @property
    def found(self) -> bool:
        return self.path is not None


def _version_of(path: str, args: list[str]) -> tuple[tuple[int, int, int] | None, bool]:
    try:
        result = subprocess.run(
            [path, *args],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None, False
    match = _VERSION.search(result.stdout + result.stderr)
    if match is None:
        return None, False
    version = (int(match[1]), int(match[2]), int(match[3]))
    # The CLI's own rule: development builds (v0.0.0-dev..., or a -dev suffix) skip the check.
    return version, "dev" in match[4] or version == (0, 0, 0)


def find_uv() -> Tool:
    # `uv run` names the uv running us in UV; otherwise look on PATH.
    path = os.environ.get("UV") or shutil.which("uv")
    version, _ = _version_of(path, ["--version"]) if path else (None, False)
    return Tool("uv", path, version)


def find_databricks_cli() -> Tool:
    path = shutil.which("databricks")
    version, development = _version_of(path, ["--version"]) if path else (None, False)
    return Tool("databricks", path, version, development)


def databricks_cli_problem(tool: Tool) -> str | None:
    """Why this CLI cannot deploy the project, or None when it can."""
    minimum = version_text(MIN_DATABRICKS_CLI_VERSION)
    if not tool.found:
        return f"the Databricks CLI is not installed ({minimum} or later is needed)"
    if tool.development_build:
        return None
    if tool.version is None:
        return f"could not read the version of {tool.path} (`databricks --version`)"
    if tool.version < MIN_DATABRICKS_CLI_VERSION:
        return (
            f"the Databricks CLI at {tool.path} is {version_text(tool.version)}; "
            f"this project needs {minimum} or later"
        )
    return None
