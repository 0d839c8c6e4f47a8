"""`uv run discover-tools` against the fake workspace's list routes."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agent_cli.discover_tools import main
from tests.cli_support import cli_env, output, run_cli, run_in_process, write_profiles
from tests.fake_workspace import DEFAULT_TOKEN, FakeWorkspace
from tests.fake_workspace.listings_api import DEFAULT_LISTINGS

Run = Callable[..., subprocess.CompletedProcess[str]]

LIST_PATHS = {
    "genie_spaces": "/api/2.0/genie/spaces",
    "warehouses": "/api/2.0/sql/warehouses",
    "functions": "/api/2.1/unity-catalog/functions",
}


@pytest.fixture
def tool_prompts() -> dict[str, str]:
    """The tool prompts of `databricks bundle init` and the pattern each value must match, as
    the template's databricks_template_schema.json declares them."""
    name = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
    return {
        "serving_endpoint": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$",
        "genie_space_id": r"^([0-9a-f]{32})?$",
        "vector_search_index": rf"^({name}\.{name}\.{name})?$",
        "uc_function_schema": rf"^({name}\.{name}(\.{name})?)?$",
        "uc_connection": r"^([A-Za-z0-9_][A-Za-z0-9_-]{0,254})?$",
        "sql_warehouse_id": r"^([0-9a-f]{16})?$",
    }


@pytest.fixture
def home(tmp_path: Path, fake: FakeWorkspace) -> Path:
    write_profiles(
        tmp_path / "databrickscfg", {"DEFAULT": {"host": fake.url, "token": DEFAULT_TOKEN}}
    )
    return tmp_path


@pytest.fixture
def discover(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    def run(*args: object) -> subprocess.CompletedProcess[str]:
        argv = ["--env-file", home / ".env", "--profile", "DEFAULT", *args]
        return run_in_process(main, argv, cli_env(home), monkeypatch, capsys)

    return run


def list_calls(fake: FakeWorkspace, kind: str) -> list[str]:
    return [r.query for r in fake.requests if r.method == "GET" and r.path == LIST_PATHS[kind]]


def test_lists_each_kind(discover: Run) -> None:
    result = discover()
    assert result.returncode == 0, output(result)
    for expected in (
        "01ef0000000000000000000000000001  Sales",
        "main.docs.chunks_index",
        "main.tools",
        "2 functions: lookup_customer, lookup_order",
        "other.more_tools",
        "github_mcp",
        "a1b2c3d4e5f60718  Starter Warehouse (RUNNING)",
        "databricks-claude-sonnet-4-5",
    ):
        assert expected in result.stdout
    # A schema without functions, and Unity Catalog's own schema, are no tools to give.
    assert "main.empty" not in result.stdout
    assert "main.information_schema" not in result.stdout
    assert "  genie_space_id: 01ef0000000000000000000000000001" in result.stdout
    assert 'securable_full_name: "main.docs.chunks_index"' in result.stdout
    assert 'id: "a1b2c3d4e5f60718"' in result.stdout
    # One app resource per function: EXECUTE is granted on functions, not on schemas.
    assert 'securable_full_name: "main.tools.lookup_customer"' in result.stdout
    assert 'securable_full_name: "main.tools.lookup_order"' in result.stdout


def test_serving_endpoint_value_is_a_chat_endpoint(discover: Run, fake: FakeWorkspace) -> None:
    embeddings = {"name": "databricks-gte-large-en", "task": "llm/v1/embeddings"}
    chat = {"name": "my-llm", "task": "llm/v1/chat"}
    fake.configure(listings={"serving_endpoints": [embeddings, chat]})
    result = discover()
    assert "databricks-gte-large-en" in result.stdout  # listed, but not offered
    assert "  serving_endpoint: my-llm" in result.stdout
    assert json.loads(discover("--json").stdout) == {"serving_endpoint": "my-llm"}


def test_follows_the_pages(discover: Run, fake: FakeWorkspace) -> None:
    fake.configure(page_size=1)
    result = discover()
    assert result.returncode == 0, output(result)
    assert "01ef0000000000000000000000000002  Support" in result.stdout
    assert "other.docs.faq_index" in result.stdout
    assert "lookup_order" in result.stdout
    assert len(list_calls(fake, "genie_spaces")) == len(DEFAULT_LISTINGS["genie_spaces"])
    assert any("page_token=1" in query for query in list_calls(fake, "genie_spaces"))
    assert any("page_token=1" in query for query in list_calls(fake, "functions"))


def test_limit_stops_reading(discover: Run, fake: FakeWorkspace) -> None:
    fake.configure(page_size=1)
    result = discover("--limit", "1")
    assert result.returncode == 0, output(result)
    assert "Sales" in result.stdout and "Support" not in result.stdout
    assert "(at most 1 shown: a higher --limit shows more)" in result.stdout
    assert len(list_calls(fake, "genie_spaces")) == 1


def test_catalog_narrows_functions_and_indexes(discover: Run) -> None:
    result = discover("--catalog", "other")
    assert result.returncode == 0, output(result)
    assert "other.more_tools" in result.stdout and "other.docs.faq_index" in result.stdout
    assert "main.tools" not in result.stdout and "main.docs.chunks_index" not in result.stdout


def test_json_is_a_config_file(discover: Run, tool_prompts: dict[str, str]) -> None:
    result = discover("--json")
    assert result.returncode == 0, output(result)
    config = json.loads(result.stdout)
    assert set(config) == set(tool_prompts)
    for prompt, value in config.items():
        assert re.fullmatch(tool_prompts[prompt], value), (prompt, value)
    assert config["uc_function_schema"] == "main.tools"


def test_forbidden_listing_is_reported_and_the_rest_printed(
    discover: Run, fake: FakeWorkspace, tool_prompts: dict[str, str]
) -> None:
    fake.configure(listings_forbidden=["connections"])
    result = discover()
    assert result.returncode == 0, output(result)
    assert "cannot list unity catalog connections" in result.stdout
    assert "permission" in result.stdout
    assert "Starter Warehouse" in result.stdout and "Sales" in result.stdout
    assert "uc_connection:" not in result.stdout

    as_json = discover("--json")
    assert "cannot list unity catalog connections" in as_json.stderr
    assert set(json.loads(as_json.stdout)) == set(tool_prompts) - {"uc_connection"}


def test_nothing_found(discover: Run, fake: FakeWorkspace) -> None:
    fake.configure(listings={})
    result = discover()
    assert result.returncode == 0, output(result)
    assert result.stdout.count("  none") == 6
    assert json.loads(discover("--json").stdout) == {}


def test_without_auth_the_error_is_clear(tmp_path: Path) -> None:
    result = run_cli("discover-tools", env=cli_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "error: no Databricks profile given" in result.stderr
    assert "--profile" in result.stderr
    assert "Traceback" not in output(result)


def test_rejected_credentials_are_an_error(discover: Run, home: Path, fake: FakeWorkspace) -> None:
    write_profiles(
        home / "databrickscfg", {"DEFAULT": {"host": fake.url, "token": "dapi-rejected-0123"}}
    )
    result = discover()
    assert result.returncode == 1
    assert "rejected the credentials of profile DEFAULT" in result.stderr
    assert "databricks auth login --profile DEFAULT" in result.stderr
    assert "Traceback" not in output(result)
