"""The mlflow version check that runs when the server starts (runtime/mlflow_internals.py)."""

from importlib.metadata import version

import pytest

from agent_server.runtime.mlflow_internals import (
    SUPPORTED_MLFLOW,
    UnsupportedMlflowError,
    check_mlflow,
)


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
