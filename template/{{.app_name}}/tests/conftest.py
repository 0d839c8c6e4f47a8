"""Fixtures: a fake Databricks workspace on 127.0.0.1 and the real agent server in front of it.

Nothing here reaches a real workspace: the server's environment drops every DATABRICKS_* and
MLFLOW_* variable of the developer's shell and ignores .env, then points the clients at the fake.
"""

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent_process import (  # noqa: F401  (fixtures)
    _deployed_app,
    _two_worker_server,
    agent_server,
    agent_url,
    canary_fake,
    deployed_app,
    reliability_server,
    two_worker_server,
)
from tests.fake_workspace import ENV_KEYS_TO_REMOVE, FakeWorkspace

# mlflow's usage telemetry, started by the tests that read traces in this process, writes
# os.environ from a thread of its own: a test iterating os.environ meanwhile (httpx does, for
# proxies) fails with "dictionary changed size during iteration" or a KeyError.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stops_session_server: the test stops a server the session shares"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """What the test modules imported (mlflow, the Databricks SDK, the agent's framework) lives
    as long as the session: frozen, it is left out of later garbage collections, which then
    walk only what the tests create."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that stops a shared server runs after every test that may use that server."""
    items.sort(key=lambda item: item.get_closest_marker("stops_session_server") is not None)


@pytest.fixture(scope="session")
def fake_workspace() -> Iterator[FakeWorkspace]:
    with FakeWorkspace() as fake:
        yield fake


@pytest.fixture
def fake() -> Iterator[FakeWorkspace]:
    """A fake workspace of the test's own, for tests that change or stop it."""
    with FakeWorkspace() as workspace:
        yield workspace


@pytest.fixture
def fake_env(fake: FakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> FakeWorkspace:
    """`fake`, with this process's environment pointing every Databricks client at it."""
    for key in ENV_KEYS_TO_REMOVE:
        monkeypatch.delenv(key, raising=False)
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    return fake


@pytest.fixture(autouse=True)
def _fresh_fake(request: pytest.FixtureRequest) -> None:
    """Undo a test's fake settings, for the tests that use the fake."""
    if "fake_workspace" in request.fixturenames:
        fake: FakeWorkspace = request.getfixturevalue("fake_workspace")
        fake.configure(tokens=None, token_delay=0.0, endpoints=None)
        fake.clear_requests()


@pytest.fixture(scope="session")
def tracking_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as http:
        yield http
