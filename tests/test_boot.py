"""Boot every agent_framework x async combination: install it, run its own tests, serve requests.

Each generated project is installed with `uv sync`, its own test suite runs (it starts a fake
workspace and the real server), and then its `start-server` script serves real requests against
the fake workspace started with `python -m tests.fake_workspace`, as a user would.
"""

import json
import os
import random
import re
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

import bundle_validation as bv
import httpx
import pytest
from conftest import OPTIONAL_TEXT_SAMPLES, REPO_ROOT, render
from project_commands import (
    FAKE_WORKSPACE_URL,
    LISTENING,
    background,
    project_env,
    run,
    wait_for_match,
    wait_healthy,
)

SCHEMA = json.loads((REPO_ROOT / "databricks_template_schema.json").read_text())
FRAMEWORKS = SCHEMA["properties"]["agent_framework"]["enum"]
ASYNC_CHOICES = SCHEMA["properties"]["async"]["enum"]


# After its `uv sync` a project's environment is complete: `uv run` need not check the lock
# and the environment again for every command.
UV_RUN = ["uv", "run", "--no-sync"]


def installed_and_self_tested(config: dict[str, str], tmp_path: Path, suite: int = 0) -> Path:
    """Render `config`, install the project with `uv sync` and run its own test suite, which
    must pass in full, with nothing skipped; returns the project folder.

    The suite runs its test files in the order of suite number `suite` (see suite_files). Its
    JUnit report is left in `tmp_path / REPORT` (see passed_per_file)."""
    result = render(config, tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / SCHEMA["properties"]["app_name"]["default"]

    # No --compile-bytecode: the suite's interpreters write the bytecode of what they import
    # (project_env keeps that on), so each module is compiled once, by the first to import it,
    # and the rest of site-packages never is (the defaults' suite imports 4,652 of its 16,305
    # modules): install and suite took 175 CPU-s this way, 197 compiling everything at install.
    synced = run(["uv", "sync", "--quiet"], project, timeout=900)
    assert synced.returncode == 0, synced.stderr

    report = f"--junit-xml={tmp_path / REPORT}"
    files = suite_files(project, suite)
    pytest_args = [*UV_RUN, "pytest", "-q", "-rs", "-p", "no:cacheprovider", report, *files]
    own_tests = run(pytest_args, project, timeout=2400)
    assert own_tests.returncode == 0, own_tests.stdout[-5000:] + own_tests.stderr[-2000:]
    summary = re.search(r"(\d+) passed", own_tests.stdout)
    assert summary and int(summary.group(1)) >= 20, own_tests.stdout[-2000:]
    assert " failed" not in own_tests.stdout
    assert unexpected_skips(own_tests.stdout) == [], own_tests.stdout[-3000:]
    return project


REPORT = "own-tests.xml"


def suite_files(project: Path, suite: int) -> list[str]:
    """The project's test files, every one once, in an order of suite number `suite`'s own.

    The suites run side by side (`make test` starts one on each pytest worker at once), and each
    spends long stretches waiting on the timeouts, restarts and slow answers it provokes. In the
    same order, they would all wait at the same moments and leave the cores idle; each suite
    shuffles its files with its own number as the seed instead (the same order on every run).
    """
    files = sorted(path.relative_to(project).as_posix() for path in project.glob("tests/test_*.py"))
    random.Random(suite).shuffle(files)
    return files


def passed_per_file(report: Path) -> Counter[str]:
    """How many tests of each module ("tests.test_tools") passed, from a pytest JUnit report (a
    test case that failed, errored or was skipped has a child element saying so)."""
    cases = ElementTree.parse(report).getroot().iter("testcase")
    return Counter(
        case.get("classname", "")
        for case in cases
        if len(case) == 0 or all(child.tag in ("system-out", "system-err") for child in case)
    )


def unexpected_skips(report: str) -> list[str]:
    """The skips in a `pytest -rs` report, but for the bundle-schema checks when this machine has
    no bundle JSON Schema (and is not CI, where bundle_validation fails instead of skipping)."""
    skips = [line for line in report.splitlines() if line.startswith("SKIPPED")]
    if bv.bundle_schema_path() is None and os.environ.get("CI", "").lower() != "true":
        skips = [line for line in skips if "no bundle JSON Schema" not in line]
    return skips


# Projects with every workspace resource chosen: their own suites call each managed
# MCP tool end to end and run the memory against a real PostgreSQL they start themselves
# (Debian's postgresql package, from scripts/install-prereqs.sh; with long-term memory the
# pgserver package's, which has pgvector).
RESOURCE_PROMPTS = [
    "genie_space_id",
    "vector_search_index",
    "uc_function_schema",
    "uc_connection",
    "sql_warehouse_id",
    "secret_scope",
    "secret_key",
    "lakebase_instance",
    "lakebase_project",
]
ALL_RESOURCES = {
    "agent_framework": "langgraph",
    **{name: OPTIONAL_TEXT_SAMPLES[name] for name in RESOURCE_PROMPTS},
}
# Sub-agents, an endpoint and an app; their suite calls both through the fake, and, where the
# tools run as the signed-in user (on_behalf_of_user), checks that the user's token reaches them.
SUBAGENTS = "boot-subagent, apps/boot-subagent-app"
RESOURCE_BOOTS = {
    "all-tools-long-term-memory-subagents-async": {
        **ALL_RESOURCES,
        "async": "yes",
        "memory": "short-and-long-term",
        "lakebase_kind": "autoscaling",
        "on_behalf_of_user": "yes",
        "subagents": SUBAGENTS,
    },
    "all-tools-short-term-memory-subagents-sync": {
        **ALL_RESOURCES,
        "async": "no",
        "memory": "short-term",
        "lakebase_kind": "provisioned",
        "uc_function_schema": "main.agent_tools.lookup_order",
        "subagents": SUBAGENTS,
    },
    # The Agents SDK's sessions: sync, where the memory runs on an event loop of its own.
    "openai-agents-all-tools-short-term-memory-subagents-sync": {
        **ALL_RESOURCES,
        "agent_framework": "openai-agents",
        "async": "no",
        "memory": "short-term",
        "lakebase_kind": "autoscaling",
        "on_behalf_of_user": "yes",
        "subagents": SUBAGENTS,
    },
}


# Every agent_framework x async combination boots and runs its own suite once: with the defaults'
# other prompts, unless a project with every workspace resource above already has that framework
# and async (its suite is a superset). The defaults themselves always boot: most projects are those.
DEFAULTS = (
    SCHEMA["properties"]["agent_framework"]["default"],
    SCHEMA["properties"]["async"]["default"],
)
BOOTED_WITH_RESOURCES = {(c["agent_framework"], c["async"]) for c in RESOURCE_BOOTS.values()}
BOOT_CASES = [
    (framework, is_async)
    for framework in FRAMEWORKS
    for is_async in ASYNC_CHOICES
    if (framework, is_async) == DEFAULTS or (framework, is_async) not in BOOTED_WITH_RESOURCES
]


SUITES = len(RESOURCE_BOOTS) + len(BOOT_CASES)


def test_each_suite_runs_every_test_file_once_in_an_order_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    names = [f"test_{letter}.py" for letter in "abcdefghij"]
    for name in [*names, "conftest.py", "support.py"]:
        (tmp_path / "tests" / name).touch()
    orders = [suite_files(tmp_path, suite) for suite in range(SUITES)]
    for files in orders:
        assert sorted(files) == [f"tests/{name}" for name in names]
    assert len({tuple(files) for files in orders}) == SUITES
    assert orders == [suite_files(tmp_path, suite) for suite in range(SUITES)]  # on every run


def test_every_framework_and_async_choice_boots() -> None:
    combinations = {(f, a) for f in FRAMEWORKS for a in ASYNC_CHOICES}
    assert set(BOOT_CASES) | BOOTED_WITH_RESOURCES == combinations
    assert DEFAULTS in BOOT_CASES


@pytest.mark.parametrize(
    ("framework", "is_async"), BOOT_CASES, ids=[f"{f}-async-{a}" for f, a in BOOT_CASES]
)
def test_generated_project_boots(tmp_path: Path, framework: str, is_async: str) -> None:
    config = {"agent_framework": framework, "async": is_async}
    suite = len(RESOURCE_BOOTS) + BOOT_CASES.index((framework, is_async))
    project = installed_and_self_tested(config, tmp_path, suite)

    env = project_env()
    fake_args = [*UV_RUN, "python", "-m", "tests.fake_workspace", "--port", "0"]
    fake_log, server_log = tmp_path / "fake.log", tmp_path / "server.log"
    with background(fake_args, project, env, fake_log) as fake:
        fake_url = wait_for_match(fake_log, FAKE_WORKSPACE_URL, fake)
        env |= {
            "DATABRICKS_HOST": fake_url,
            "DATABRICKS_TOKEN": "dapi-fake-token",
            "DATABRICKS_CONFIG_FILE": str(tmp_path / "no-databrickscfg"),
            "SERVING_ENDPOINT": "boot-test-endpoint",
            "AGENT_ENV_FILE": os.devnull,
        }
        server_args = [*UV_RUN, "start-server", "--port", "0"]
        with background(server_args, project, env, server_log) as server:
            url = wait_for_match(server_log, LISTENING, server)
            wait_healthy(url, process=server, log=server_log)
            body = {"input": [{"role": "user", "content": "Boot check"}]}
            invoked = httpx.post(f"{url}/invocations", json=body, timeout=60)
            with httpx.stream(
                "POST", f"{url}/invocations", json={**body, "stream": True}, timeout=60
            ) as response:
                assert response.status_code == 200
                lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    if framework != "model-serving-migration":
        assert invoked.status_code == 200, invoked.text
        assert "You said: Boot check" in invoked.text
        assert any("You said: Boot check" in line for line in lines)
    else:
        assert invoked.status_code == 501
        assert "not been migrated yet" in invoked.json()["detail"]
        assert "not been migrated yet" in lines[-2]


@pytest.mark.parametrize("config", list(RESOURCE_BOOTS.values()), ids=list(RESOURCE_BOOTS))
def test_project_with_workspace_resources_boots(tmp_path: Path, config: dict[str, str]) -> None:
    suite = list(RESOURCE_BOOTS.values()).index(config)
    installed_and_self_tested(config, tmp_path, suite)
    # The suites of the tools, the memory and the sub-agents ran, with every test passing.
    passed = passed_per_file(tmp_path / REPORT)
    for suite in ("tests.test_tools", "tests.test_memory", "tests.test_subagents"):
        assert passed[suite] >= 7, (suite, dict(passed))
