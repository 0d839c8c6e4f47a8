"""Shared helpers and fixtures: rendering the template and the prompt-combination matrix.

`render()` runs `tests/bundle-init`, which has the argument shape of `databricks bundle init`
and runs the real CLI instead of the offline stand-in when DATABRICKS_CLI is set.

The combination matrix is computed from `databricks_template_schema.json`, so a new prompt is
covered as soon as it is added: every `enum` (and boolean) prompt contributes all its values,
and every optional free-text prompt (default "") contributes an empty and a non-empty value,
the non-empty one taken from OPTIONAL_TEXT_SAMPLES.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import regex

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE_INIT = REPO_ROOT / "tests" / "bundle-init"
TEMPLATE_SCHEMA_PATH = REPO_ROOT / "databricks_template_schema.json"

# A non-empty sample for every optional free-text prompt (a string property whose default is
# ""). Whoever adds such a prompt adds a realistic value here; combination_matrix() fails
# until they do. Each sample must match the property's `pattern`.
OPTIONAL_TEXT_SAMPLES: dict[str, str] = {
    "genie_space_id": "01ef0123456789abcdef0123456789ab",
    "subagents": "research-agent, apps/billing-agent",
    "vector_search_index": "main.docs.product_docs_index",
    "uc_function_schema": "main.agent_tools",
    "uc_connection": "github-mcp",
    "sql_warehouse_id": "0123456789abcdef",
    "secret_scope": "agent-secrets",
    "secret_key": "weather_api_key",
    "lakebase_instance": "agent-memory",
    "lakebase_project": "agent-memory",
}

# Enum values that the template rejects together (a `fail` in template/__preamble.tmpl): no
# project to render, so no row of the matrix (tests/test_bad_input.py checks the refusal).
REJECTED_COMBINATIONS: list[dict[str, str]] = [
    {"agent_framework": "openai-agents", "memory": "short-and-long-term"},
]

RENDER_TIMEOUT_S = 300


def load_template_schema() -> dict[str, Any]:
    return json.loads(TEMPLATE_SCHEMA_PATH.read_text(encoding="utf-8"))


def is_hidden(prop: Mapping[str, Any]) -> bool:
    """A hidden derived property (`skip_prompt_if: {}`) is never set in a config file."""
    return prop.get("skip_prompt_if") == {}


def prompt_order(schema: Mapping[str, Any]) -> list[str]:
    """Property names in the CLI's order: by `order`, then unordered ones, alphabetically."""
    props = schema["properties"]
    ordered = sorted(
        (p for p in props if "order" in props[p]), key=lambda p: (props[p]["order"], p)
    )
    return ordered + sorted(p for p in props if "order" not in props[p])


def matrix_axes(schema: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The values each varied prompt takes in the matrix, in prompt order.

    Prompts with a non-empty default that are neither enums nor booleans (app_name,
    serving_endpoint) are not varied: they take their defaults, and dedicated tests cover
    non-default values.
    """
    axes: dict[str, list[Any]] = {}
    for name in prompt_order(schema):
        prop = schema["properties"][name]
        if is_hidden(prop):
            continue
        if "enum" in prop:
            axes[name] = list(prop["enum"])
        elif prop.get("type") == "boolean":
            axes[name] = [True, False]
        elif prop.get("type") == "string" and prop.get("default") == "":
            if name not in OPTIONAL_TEXT_SAMPLES:
                raise LookupError(
                    f'optional text property {name!r} (default "") has no sample value: add a '
                    f"realistic non-empty value for it to OPTIONAL_TEXT_SAMPLES in {__file__}"
                )
            sample = OPTIONAL_TEXT_SAMPLES[name]
            pattern = prop.get("pattern")
            # The CLI matches with Go RE2 (unanchored search); the patterns are RE2-compatible.
            if pattern is not None and not regex.search(pattern, sample):
                raise ValueError(
                    f"OPTIONAL_TEXT_SAMPLES[{name!r}] = {sample!r} does not match the schema "
                    f"pattern {pattern!r}"
                )
            axes[name] = ["", sample]
    return axes


def combination_matrix(schema: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of the enum prompts, each with the optional texts all empty and all
    set, as config-file dicts.

    Optional texts vary together, not as a cross product (each adds its own lines to the
    output, independently of the others; 2^n renders would test nothing more). A text prompt
    asked only under a condition (`skip_prompt_if` on other prompts' values) takes its default
    where the condition skips it, and its sample where it is asked, so that prompts that go
    together (memory and lakebase_instance, secret_scope and secret_key) stay consistent. An
    enum prompt takes its default where its condition skips it (lakebase_kind without memory).
    Combinations the template rejects (REJECTED_COMBINATIONS) are left out.
    """
    schema = load_template_schema() if schema is None else schema
    axes = matrix_axes(schema)
    props = schema["properties"]
    texts = [name for name in axes if "enum" not in props[name] and props[name]["type"] == "string"]
    choices = {name: values for name, values in axes.items() if name not in texts}
    names = list(choices)
    combinations: list[dict[str, Any]] = []
    for values in itertools.product(*choices.values()):
        for filled in [False, True] if texts else [False]:
            config = dict(zip(names, values, strict=True))
            for name in texts:
                config[name] = axes[name][1] if filled else ""
            for name in axes:
                condition = props[name].get("skip_prompt_if")
                if condition and skip_condition_holds(condition, config):
                    config[name] = props[name]["default"]
                elif condition and name in texts:
                    config[name] = axes[name][1]
            combination = {name: config[name] for name in axes}
            if any(
                all(combination.get(name) == value for name, value in rejected.items())
                for rejected in REJECTED_COMBINATIONS
            ):
                continue
            if combination not in combinations:  # a skipped enum repeats its default's row
                combinations.append(combination)
    return combinations


def skip_condition_holds(condition: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """Whether a `skip_prompt_if` of `properties: {name: {const: value}}`, or an `anyOf` of
    such conditions, matches `config`."""
    if "anyOf" in condition:
        return any(skip_condition_holds(option, config) for option in condition["anyOf"])
    return all(config.get(name) == rule["const"] for name, rule in condition["properties"].items())


def combination_id(config: Mapping[str, Any]) -> str:
    """A readable, unique test id such as `agent_framework=langgraph,async=yes`."""
    parts = []
    for name, value in config.items():
        if isinstance(value, bool):
            value = str(value).lower()
        parts.append(f"{name}={value}")
    return ",".join(parts) or "defaults"


def run_bundle_init(config_file: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """`bundle init` of this repo's template with `config_file` into `out` (never raises).

    The offline stand-in runs strict here: an unknown key in a test's config is an error (the
    CLI, and the stand-in by default, drop it silently)."""
    return subprocess.run(
        [
            str(BUNDLE_INIT),
            str(REPO_ROOT),
            "--config-file",
            str(config_file),
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=RENDER_TIMEOUT_S,
        check=False,
        env={**os.environ, "BUNDLE_INIT_STRICT_CONFIG": "1"},
    )


def render(
    config: Mapping[str, Any], out: Path, *, config_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Render the template with `config` into `out` (the project lands in `out/<app_name>`).

    The config is written as JSON to `config_file` (default: next to `out`, so `out` holds only
    what the renderer writes). Never raises on a failed render: check the returned process.
    """
    if config_file is None:
        config_file = out.parent / f"{out.name}.config.json"
    config_file.write_text(json.dumps(dict(config)), encoding="utf-8")
    return run_bundle_init(config_file, out)


def using_real_cli() -> bool:
    return bool(os.environ.get("DATABRICKS_CLI"))


@dataclass(frozen=True)
class RenderedCombination:
    config: dict[str, Any]
    result: subprocess.CompletedProcess[str]
    out_dir: Path
    project: Path

    @property
    def app_name(self) -> str:
        return self.project.name


COMBINATIONS = combination_matrix()
COMBINATION_IDS = [combination_id(c) for c in COMBINATIONS]

_MATRIX_TIMING = pytest.StashKey[tuple[int, float]]()


def _default_app_name() -> str:
    return str(load_template_schema()["properties"]["app_name"]["default"])


@pytest.fixture(scope="session")
def rendered_matrix(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> dict[str, RenderedCombination]:
    """Every combination rendered once, keyed by combination_id().

    Once for the whole session: under pytest-xdist the first worker to get here renders into the
    folder the workers share (the parent of their own temporary folders, as xdist's docs
    suggest), and the others wait for it and read the same projects. Tests only read them
    (a test that changes a project copies it first).
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root, results = shared / "matrix", shared / "matrix" / "results.json"
    with (shared / "matrix.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not results.exists():
            results.parent.mkdir(exist_ok=True)
            results.write_text(json.dumps(render_matrix(root, pytestconfig)), encoding="utf-8")
    app_name = _default_app_name()
    rendered: dict[str, RenderedCombination] = {}
    outcomes = json.loads(results.read_text(encoding="utf-8"))
    for index, (config, cid) in enumerate(zip(COMBINATIONS, COMBINATION_IDS, strict=True)):
        result = subprocess.CompletedProcess([], **outcomes[index])
        out = root / f"c{index}"
        project = out / str(config.get("app_name", app_name))
        rendered[cid] = RenderedCombination(dict(config), result, out, project)
    return rendered


def render_matrix(root: Path, pytestconfig: pytest.Config) -> list[dict[str, Any]]:
    """Render every combination into root/c<index>; returns each render's exit code and output."""
    # Warm-up: the stand-in is compiled on its first run; keep that out of the timing.
    render({}, root / "warmup")
    outcomes = []
    start = time.perf_counter()
    for index, config in enumerate(COMBINATIONS):
        result = render(config, root / f"c{index}")
        outcomes.append(
            {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
        )
    pytestconfig.stash[_MATRIX_TIMING] = (len(outcomes), time.perf_counter() - start)
    return outcomes


@pytest.fixture
def rendered(
    combination: str, rendered_matrix: dict[str, RenderedCombination]
) -> RenderedCombination:
    """The rendered project of one combination; fails the test if rendering failed."""
    case = rendered_matrix[combination]
    assert case.result.returncode == 0, (
        f"render failed for {combination} (exit {case.result.returncode}):\n{case.result.stderr}"
    )
    assert case.project.is_dir(), f"render wrote no {case.project}"
    return case


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "combination" in metafunc.fixturenames:
        metafunc.parametrize("combination", COMBINATION_IDS)


# The tests that take minutes each (every other test takes seconds), with their lengths in units of
# about 50 s under `make test`: the boots of generated projects (tests/test_boot.py; those with
# every workspace resource run the largest suites, the migration scaffold the smallest), and the
# installs at the lowest dependency bounds (langgraph's has the most to install).
def long_test_length(item: pytest.Item) -> int:
    """How long `item` takes, relative to the other long tests; 0 for a test of seconds."""
    name = getattr(item, "originalname", "")
    if name == "test_project_with_workspace_resources_boots":
        return 10
    if name == "test_generated_project_boots":
        return 3 if "model-serving-migration" in item.name else 8
    if name == "test_lowest_direct_dependencies_work":
        return 2 if "langgraph" in item.name else 1
    return 0


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start every pytest-xdist worker on its share of the long tests, so that none is left with
    a long test at the end while the others sit idle.

    xdist's `worksteal` scheduler (`make test`) hands each worker a contiguous slice of the
    collection at first (the remaining tests divided by the workers still to serve, in turn);
    a worker that runs out steals from the end of another's slice. So the long tests are shared
    out longest first, each to the worker with the least of them so far, and put at the start of
    that worker's slice. Every worker collects, and so orders, the same items.
    """
    long_tests = sorted(
        (item for item in items if long_test_length(item)), key=lambda item: -long_test_length(item)
    )
    if not long_tests:
        return
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for item in long_tests:
        least = loads.index(min(loads))
        shares[least].append(item)
        loads[least] += long_test_length(item)
    rest = [item for item in items if not long_test_length(item)]
    ordered: list[pytest.Item] = []
    for worker, share in enumerate(shares):
        slice_size = (len(items) - len(ordered)) // (workers - worker)
        others = max(0, slice_size - len(share))
        ordered += share + rest[:others]
        rest = rest[others:]
    items[:] = ordered + rest


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    timing = config.stash.get(_MATRIX_TIMING, None)
    if timing is not None:
        count, seconds = timing
        terminalreporter.write_line(f"render matrix: {count} combinations in {seconds:.1f} s")
