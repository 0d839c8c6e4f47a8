"""MLflow experiment routes (get, get-by-name, create, delete, restore), as the SDK calls them.

The experiments live on the FakeWorkspace instance (`experiments(fake)`), so a test can seed or
inspect them and two fakes never share any. Error codes and messages follow Databricks: a
missing experiment is 404 RESOURCE_DOES_NOT_EXIST, a taken name 400 RESOURCE_ALREADY_EXISTS.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse, Response

from .core import Call, error, route

if TYPE_CHECKING:
    from .server import FakeWorkspace

STATE_KEY = "mlflow_experiments"
FIRST_EXPERIMENT_ID = 1_000_000_000_000_001


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    lifecycle_stage: str  # "active" or "deleted"
    creation_time: int
    last_update_time: int

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "artifact_location": f"dbfs:/databricks/mlflow-tracking/{self.experiment_id}",
            "tags": [],
        }


class ExperimentStore:
    """The fake's experiments; thread-safe, as the fake serves from its own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Experiment] = {}
        self._ids = itertools.count(FIRST_EXPERIMENT_ID)

    def all(self) -> list[Experiment]:
        with self._lock:
            return list(self._by_id.values())

    def get(self, experiment_id: str) -> Experiment | None:
        with self._lock:
            return self._by_id.get(experiment_id)

    def by_name(self, name: str) -> Experiment | None:
        """The active experiment of that name, else a deleted one (as get-by-name does)."""
        with self._lock:
            named = [e for e in self._by_id.values() if e.name == name]
        named.sort(key=lambda e: e.lifecycle_stage != "active")
        return named[0] if named else None

    def create(self, name: str) -> Experiment | None:
        """A new active experiment, or None when the name is taken (even by a deleted one)."""
        with self._lock:
            if any(e.name == name for e in self._by_id.values()):
                return None
            now = int(time.time() * 1000)
            experiment = Experiment(str(next(self._ids)), name, "active", now, now)
            self._by_id[experiment.experiment_id] = experiment
            return experiment

    def set_stage(self, experiment_id: str, stage: str) -> Experiment | None:
        with self._lock:
            experiment = self._by_id.get(experiment_id)
            if experiment is None:
                return None
            updated = replace(
                experiment, lifecycle_stage=stage, last_update_time=int(time.time() * 1000)
            )
            self._by_id[experiment_id] = updated
            return updated


def experiments(fake: FakeWorkspace) -> ExperimentStore:
    """The experiments of `fake`, created on first use."""
    return fake.state.setdefault(STATE_KEY, ExperimentStore())


def _query(call: Call, name: str) -> str:
    return parse_qs(call.request.url.query).get(name, [""])[0]


def _body_field(call: Call, name: str) -> str:
    return str(call.body.get(name, "")) if isinstance(call.body, dict) else ""


def _missing(what: str) -> JSONResponse:
    return error(404, "RESOURCE_DOES_NOT_EXIST", f"Node {what} does not exist.")


def _required(name: str) -> JSONResponse:
    return error(400, "INVALID_PARAMETER_VALUE", f"Missing required parameter '{name}'.")


@route("GET", "/api/2.0/mlflow/experiments/get")
async def get_experiment(call: Call) -> Response:
    experiment_id = _query(call, "experiment_id")
    if not experiment_id:
        return _required("experiment_id")
    experiment = experiments(call.fake).get(experiment_id)
    if experiment is None:
        return _missing(f"ID {experiment_id}")
    return JSONResponse({"experiment": experiment.as_json()})


@route("GET", "/api/2.0/mlflow/experiments/get-by-name")
async def get_experiment_by_name(call: Call) -> Response:
    name = _query(call, "experiment_name")
    if not name:
        return _required("experiment_name")
    experiment = experiments(call.fake).by_name(name)
    if experiment is None:
        return _missing(f"'{name}'")
    return JSONResponse({"experiment": experiment.as_json()})


@route("POST", "/api/2.0/mlflow/experiments/create")
async def create_experiment(call: Call) -> Response:
    name = _body_field(call, "name")
    if not name:
        return _required("name")
    if not name.startswith("/"):
        return error(
            400, "INVALID_PARAMETER_VALUE", f"Experiment name must be an absolute path: {name}"
        )
    experiment = experiments(call.fake).create(name)
    if experiment is None:
        return error(400, "RESOURCE_ALREADY_EXISTS", f"Node named '{name}' already exists")
    return JSONResponse({"experiment_id": experiment.experiment_id})


async def _set_stage(call: Call, stage: str) -> Response:
    experiment_id = _body_field(call, "experiment_id")
    if not experiment_id:
        return _required("experiment_id")
    if experiments(call.fake).set_stage(experiment_id, stage) is None:
        return _missing(f"ID {experiment_id}")
    return JSONResponse({})


@route("POST", "/api/2.0/mlflow/experiments/delete")
async def delete_experiment(call: Call) -> Response:
    return await _set_stage(call, "deleted")


@route("POST", "/api/2.0/mlflow/experiments/restore")
async def restore_experiment(call: Call) -> Response:
    return await _set_stage(call, "active")
