"""The MLflow experiment that receives the traces of local runs: found by id or by name.

Local runs get their own experiment, `/Users/<user>/<app>-local`, next to the ones the bundle
creates for deployed targets (`/Users/<user>/<app>-<target>`, see databricks.yml).
"""

from __future__ import annotations

from dataclasses import dataclass

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceConflict

from agent_cli.console import CliError

ACTIVE = "active"


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    active: bool


def default_name(user_name: str, app_name: str) -> str:
    return f"/Users/{user_name}/{app_name}-local"


def full_name(name: str, user_name: str) -> str:
    """An experiment name as a workspace path: a bare name goes to the user's folder."""
    return name if name.startswith("/") else f"/Users/{user_name}/{name}"


def _experiment(found: object) -> Experiment | None:
    experiment = getattr(found, "experiment", None)
    if experiment is None or experiment.experiment_id is None:
        return None
    stage = (experiment.lifecycle_stage or ACTIVE).lower()
    return Experiment(experiment.experiment_id, experiment.name or "", stage == ACTIVE)


def _api_error(action: str, exc: OSError) -> CliError:
    return CliError(f"could not {action}: {exc}")


def by_id(client: WorkspaceClient, experiment_id: str) -> Experiment | None:
    try:
        return _experiment(client.experiments.get_experiment(experiment_id))
    except NotFound:
        return None
    except OSError as exc:  # an API error (DatabricksError), or no answer in time
        raise _api_error(f"read MLflow experiment {experiment_id}", exc) from None


def by_name(client: WorkspaceClient, name: str) -> Experiment | None:
    """The experiment named `name`: the active one, else a deleted one, else None."""
    try:
        return _experiment(client.experiments.get_by_name(name))
    except NotFound:
        return None
    except OSError as exc:  # an API error (DatabricksError), or no answer in time
        raise _api_error(f"look up MLflow experiment {name}", exc) from None


def create(client: WorkspaceClient, name: str) -> Experiment:
    """A new experiment `name`; if another run created it meanwhile, that one."""
    try:
        created = client.experiments.create_experiment(name)
    except ResourceConflict:  # RESOURCE_ALREADY_EXISTS, or ALREADY_EXISTS in some contexts
        existing = by_name(client, name)
        if existing is None:
            raise CliError(f"MLflow experiment {name} exists but cannot be read") from None
        return existing
    except OSError as exc:  # an API error (DatabricksError), or no answer in time
        raise _api_error(f"create MLflow experiment {name}", exc) from None
    return Experiment(str(created.experiment_id), name, True)


def restore(client: WorkspaceClient, experiment: Experiment) -> Experiment:
    try:
        client.experiments.restore_experiment(experiment.experiment_id)
    except OSError as exc:  # an API error (DatabricksError), or no answer in time
        raise _api_error(f"restore MLflow experiment {experiment.name}", exc) from None
    return Experiment(experiment.experiment_id, experiment.name, True)
