"""The fake workspace's MLflow experiment routes, called through databricks-sdk."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import BadRequest, NotFound, ResourceAlreadyExists

from tests.fake_workspace import FakeWorkspace
from tests.fake_workspace.mlflow_api import experiments

NAME = "/Users/tester@example.com/an-experiment"


def client() -> WorkspaceClient:
    return WorkspaceClient(config=Config(retry_timeout_seconds=5))


def test_experiment_lifecycle(fake_env: FakeWorkspace) -> None:
    workspace = client()
    with pytest.raises(NotFound):
        workspace.experiments.get_by_name(NAME)

    experiment_id = workspace.experiments.create_experiment(NAME).experiment_id
    assert experiment_id is not None
    found = workspace.experiments.get_experiment(experiment_id).experiment
    assert found is not None
    assert (found.name, found.lifecycle_stage) == (NAME, "active")
    by_name = workspace.experiments.get_by_name(NAME).experiment
    assert by_name is not None and by_name.experiment_id == experiment_id
    with pytest.raises(ResourceAlreadyExists):
        workspace.experiments.create_experiment(NAME)

    workspace.experiments.delete_experiment(experiment_id)
    deleted = workspace.experiments.get_by_name(NAME).experiment
    assert deleted is not None and deleted.lifecycle_stage == "deleted"
    with pytest.raises(ResourceAlreadyExists):  # a deleted experiment still holds its name
        workspace.experiments.create_experiment(NAME)
    workspace.experiments.restore_experiment(experiment_id)
    restored = workspace.experiments.get_experiment(experiment_id).experiment
    assert restored is not None and restored.lifecycle_stage == "active"

    with pytest.raises(NotFound):
        workspace.experiments.get_experiment("42")
    with pytest.raises(BadRequest):
        workspace.experiments.create_experiment("not-a-path")
    paths = [(r.method, r.path) for r in fake_env.requests]
    assert ("POST", "/api/2.0/mlflow/experiments/restore") in paths


def test_experiments_belong_to_one_fake(fake: FakeWorkspace) -> None:
    assert experiments(fake).create(NAME) is not None
    with FakeWorkspace() as other:
        assert experiments(other).all() == []
    assert [e.name for e in experiments(fake).all()] == [NAME]
