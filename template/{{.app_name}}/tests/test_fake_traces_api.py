"""The fake workspace's trace routes: mlflow's own exporter against them, and malformed calls."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fake_workspace import DEFAULT_TOKEN, FakeWorkspace
from tests.fake_workspace.mlflow_api import experiments
from tests.fake_workspace.traces_api import (
    STORAGE_PREFIX,
    stored_trace,
    unknown_tracking_calls,
)
from tests.support import auth_headers

TRACE_ID = "tr-" + "ab" * 16


@pytest.fixture
def workspace() -> Iterator[tuple[FakeWorkspace, str]]:
    with FakeWorkspace() as fake:
        experiment = experiments(fake).create("/Users/tester@example.com/traces")
        assert experiment is not None
        yield fake, experiment.experiment_id


def trace_info(experiment_id: str, **changes: object) -> dict[str, object]:
    info: dict[str, object] = {
        "trace_id": TRACE_ID,
        "trace_location": {
            "type": "MLFLOW_EXPERIMENT",
            "mlflow_experiment": {"experiment_id": experiment_id},
        },
        "request_time": "2026-01-01T00:00:00.123Z",
        "execution_duration": "0.5s",
        "state": "OK",
        "trace_metadata": {"mlflow.trace_schema.version": "3"},
        "tags": {"mlflow.traceName": "invoke"},
    }
    return {**info, **changes}


def start_trace(fake: FakeWorkspace, body: object) -> httpx.Response:
    return httpx.post(
        f"{fake.url}/api/3.0/mlflow/traces", json=body, headers=auth_headers(), timeout=10
    )


def test_a_trace_is_stored_and_its_spans_uploaded_through_the_presigned_url(
    workspace: tuple[FakeWorkspace, str],
) -> None:
    fake, experiment_id = workspace
    response = start_trace(fake, {"trace": {"trace_info": trace_info(experiment_id)}})
    assert response.status_code == 200, response.text
    tags = response.json()["trace"]["trace_info"]["tags"]
    location = f"dbfs:/databricks/mlflow-tracking/{experiment_id}/{TRACE_ID}/artifacts"
    assert tags["mlflow.artifactLocation"] == location
    assert httpx.get(f"{fake.url}/__fake__/traces").json() == {"traces": 1, "with_spans": 0}

    credentials = httpx.get(
        f"{fake.url}/api/2.0/mlflow/traces/{TRACE_ID}/credentials-for-data-upload",
        headers=auth_headers(),
    ).json()["credential_info"]
    assert credentials["type"] == "AWS_PRESIGNED_URL"
    # A presigned URL works without the workspace token, and only as signed.
    unsigned = credentials["signed_uri"].split("?")[0]
    assert httpx.put(unsigned, content=b'{"spans": []}').status_code == 403
    assert httpx.put(credentials["signed_uri"], content=b"not json").status_code == 400
    assert httpx.put(credentials["signed_uri"], content=b'{"spans": []}').status_code == 200
    stored = stored_trace(fake, TRACE_ID)
    assert stored is not None and stored.data == {"spans": []}
    assert unknown_tracking_calls(fake) == []
    # What a process that did not start the fake reads back.
    counts = httpx.get(f"{fake.url}/__fake__/traces").json()
    assert counts == {"traces": 1, "with_spans": 1}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "INVALID_PARAMETER_VALUE"),
        ({"trace": {"trace_info": {"trace_id": "not-a-trace-id"}}}, 400, "INVALID_PARAMETER_VALUE"),
        ({"trace": {"trace_info": "x"}}, 400, "INVALID_PARAMETER_VALUE"),
        ("state", 400, "INVALID_PARAMETER_VALUE"),
        ("request_time", 400, "INVALID_PARAMETER_VALUE"),
        ("experiment", 404, "RESOURCE_DOES_NOT_EXIST"),
    ],
)
def test_a_malformed_trace_is_rejected_with_the_databricks_error(
    workspace: tuple[FakeWorkspace, str], body: object, status: int, code: str
) -> None:
    fake, experiment_id = workspace
    if body == "state":
        body = {"trace": {"trace_info": trace_info(experiment_id, state="FINE")}}
    elif body == "request_time":
        body = {"trace": {"trace_info": trace_info(experiment_id, request_time=1234)}}
    elif body == "experiment":
        body = {"trace": {"trace_info": trace_info("42")}}
    response = start_trace(fake, body)
    assert (response.status_code, response.json()["error_code"]) == (status, code)
    assert response.json()["message"]
    assert stored_trace(fake, TRACE_ID) is None


def test_the_token_is_required(workspace: tuple[FakeWorkspace, str]) -> None:
    fake, experiment_id = workspace
    body = {"trace": {"trace_info": trace_info(experiment_id)}}
    response = httpx.post(f"{fake.url}/api/3.0/mlflow/traces", json=body)
    assert response.status_code == 401
    assert DEFAULT_TOKEN not in response.text


def test_unknown_tracking_calls_are_listed(workspace: tuple[FakeWorkspace, str]) -> None:
    fake, _ = workspace
    response = httpx.post(f"{fake.url}/api/2.0/mlflow/traces/no-such-call", headers=auth_headers())
    assert response.status_code == 404
    httpx.get(f"{fake.url}{STORAGE_PREFIX}", headers=auth_headers())
    assert unknown_tracking_calls(fake) == [
        "POST /api/2.0/mlflow/traces/no-such-call",
        f"GET {STORAGE_PREFIX}",
    ]


def test_tracking_faults_apply_to_the_whole_store(workspace: tuple[FakeWorkspace, str]) -> None:
    fake, experiment_id = workspace
    fake.configure(tracking_status=503)
    body = {"trace": {"trace_info": trace_info(experiment_id)}}
    assert start_trace(fake, body).status_code == 503
    get = f"{fake.url}/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    assert httpx.get(get, headers=auth_headers()).status_code == 503
    fake.configure(tracking_status=None, tracking_delay=0.5)
    started = time.monotonic()
    assert start_trace(fake, body).status_code == 200
    assert time.monotonic() - started >= 0.5
