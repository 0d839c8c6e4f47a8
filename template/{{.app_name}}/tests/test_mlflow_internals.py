"""The mlflow version check that runs when the server starts, and the other uses of mlflow's
internals (runtime/mlflow_internals.py)."""

import os
from collections.abc import Iterator
from importlib.metadata import version

import pytest
from mlflow.store.artifact import databricks_artifact_repo
from mlflow.tracking._tracking_service import utils as tracking_utils
from mlflow.utils import databricks_utils

from agent_server.runtime.mlflow_internals import (
    SUPPORTED_MLFLOW,
    UnsupportedMlflowError,
    cache_databricks_host_creds,
    check_mlflow,
)
from tests.fake_workspace import FakeWorkspace

# What the databricks-sdk asks the workspace when it resolves an OAuth configuration.
DISCOVERY_PATHS = {"/.well-known/databricks-config", "/oidc/.well-known/oauth-authorization-server"}
# The service principal the fake workspace signs in with OAuth (its /oidc routes), as on Apps.
OAUTH_CLIENT = {
    "DATABRICKS_CLIENT_ID": "fake-service-principal",
    "DATABRICKS_CLIENT_SECRET": "fake-client-secret",
}


def test_the_installed_mlflow_is_supported() -> None:
    check_mlflow()
    lowest, beyond = SUPPORTED_MLFLOW
    assert lowest.release[0] <= int(version("mlflow").split(".")[0]) <= beyond.release[0]


@pytest.mark.parametrize("installed", ["3.16.0", "3.17.2", "3.18.1"])
def test_versions_in_the_range_pass(installed: str) -> None:
    check_mlflow(installed)


@pytest.mark.parametrize("installed", ["3.15.9", "3.19.0", "4.0.0"])
def test_versions_outside_the_range_stop_the_server_with_the_range(installed: str) -> None:
    with pytest.raises(UnsupportedMlflowError, match=r"mlflow >= 3\.16, < 3\.19"):
        check_mlflow(installed)


@pytest.fixture
def oauth_workspace(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWorkspace]:
    """A workspace signed in to with OAuth, as on Databricks Apps; mlflow's resolver restored."""
    for module in (databricks_utils, databricks_artifact_repo, tracking_utils):
        monkeypatch.setattr(module, "get_databricks_host_creds", module.get_databricks_host_creds)
    with FakeWorkspace() as fake:
        for key in [k for k in os.environ if k.startswith("DATABRICKS_")]:
            monkeypatch.delenv(key)
        env = {k: v for k, v in fake.env().items() if k != "DATABRICKS_TOKEN"}
        for key, value in {**env, **OAUTH_CLIENT}.items():
            monkeypatch.setenv(key, value)
        yield fake


def discovery_calls(fake: FakeWorkspace) -> int:
    return sum(request.path in DISCOVERY_PATHS for request in fake.requests)


def test_the_databricks_configuration_is_resolved_once_not_per_call(
    oauth_workspace: FakeWorkspace,
) -> None:
    fake = oauth_workspace
    databricks_utils.get_databricks_host_creds("databricks")
    assert discovery_calls(fake) > 0  # what mlflow alone does at every call
    cache_databricks_host_creds()
    first = databricks_utils.get_databricks_host_creds("databricks")
    resolved = discovery_calls(fake)
    # The tracking store and the trace upload both get the same answer, without asking again.
    for resolve in (tracking_utils.get_databricks_host_creds,) * 3 + (
        databricks_artifact_repo.get_databricks_host_creds,
    ) * 3:
        assert resolve("databricks") is first
    assert discovery_calls(fake) == resolved
    assert first.host == fake.url


def test_the_configuration_is_resolved_again_once_it_is_older_than_the_ttl(
    oauth_workspace: FakeWorkspace,
) -> None:
    fake = oauth_workspace
    cache_databricks_host_creds(ttl=0.0)
    databricks_utils.get_databricks_host_creds("databricks")
    resolved = discovery_calls(fake)
    databricks_utils.get_databricks_host_creds("databricks")
    assert discovery_calls(fake) > resolved
