"""MLflow traces and logged models as a Databricks workspace takes them from an app.

With ``MLFLOW_TRACKING_URI=databricks``, mlflow 3.17 (the version this project installs) exports
each finished trace in two steps (mlflow/tracing/export/mlflow_v3.py, the REST store in
mlflow/store/tracking/rest_store.py and mlflow/store/artifact/databricks_artifact_repo.py):

1. ``POST /api/3.0/mlflow/traces`` (StartTraceV3) with the trace's info and no spans; the answer
   is the stored info, whose tag ``mlflow.artifactLocation`` says where the spans go
   (``dbfs:/databricks/mlflow-tracking/<experiment>/<trace id>/artifacts``);
2. ``GET /api/2.0/mlflow/traces/<trace id>/credentials-for-data-upload``: a presigned URL of the
   workspace's cloud storage, then a ``PUT`` of ``traces.json`` (the spans) to that URL, without
   the workspace token. Here the URL points back at the fake (``/fake-cloud-storage/...``) and
   carries a signature the fake checks, as a presigned URL does.

Spans are not sent one by one to Databricks (mlflow skips span logging for a ``databricks``
tracking URI). Before exporting, mlflow reads the experiment (mlflow_api.py): an experiment
tagged with a Unity Catalog trace destination would send traces to UC tables instead; the fake's
experiments have no such tag, so traces take the experiment path above.

Version tracking (agent_server/runtime/tracing.py, ``mlflow.set_active_model``) searches the
experiment's logged models by name and, the first time, creates an external one: create, an
``MLmodel`` file uploaded through presigned credentials, finalize.

Feedback on a trace (``mlflow.log_feedback``, the chat page's thumbs) is ``POST
/api/3.0/mlflow/traces/<trace id>/assessments``; it is kept with the trace (``assessments``).

Every stored trace can be read back (`stored_traces(fake)`, `stored_trace(fake, trace_id)`);
a fake in another process says how many it holds (`GET /__fake__/traces`).
Unknown calls under the MLflow and storage prefixes get a 404 like any unknown route;
`unknown_tracking_calls(fake)` lists them so that a test can assert there were none.

Faults, for every call under those prefixes (settings ``tracking_status``: answer that HTTP
error; ``tracking_delay``: seconds before answering, a store that hangs)::

    fake.configure(tracking_status=503)
    fake.configure(tracking_delay=30.0)
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from starlette.responses import JSONResponse, Response

from .core import ROUTES, Call, Handler, Route, error, route
from .mlflow_api import experiments

if TYPE_CHECKING:
    from .server import FakeWorkspace

STATE_KEY = "mlflow_traces"
STORAGE_PREFIX = "/fake-cloud-storage/"
# Calls under these prefixes are the tracking store's; an unknown one is a gap in the fake.
TRACKING_PREFIXES = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", STORAGE_PREFIX)
TRACE_STATES = ("OK", "ERROR", "IN_PROGRESS")
ARTIFACT_ROOT = "dbfs:/databricks/mlflow-tracking"
TRACE_DATA_FILE = "traces.json"


@dataclass
class StoredTrace:
    info: dict[str, Any]  # TraceInfoV3 as the workspace answered it (proto JSON)
    data: dict[str, Any] | None = None  # traces.json as uploaded: {"spans": [...]}
    assessments: list[dict[str, Any]] = field(default_factory=list)  # as created, with ids

    @property
    def trace_id(self) -> str:
        return str(self.info["trace_id"])

    @property
    def spans(self) -> list[dict[str, Any]]:
        return list((self.data or {}).get("spans", []))


@dataclass
class LoggedModel:
    info: dict[str, Any]


@dataclass
class TrackingStore:
    """Traces, logged models and the uploaded objects of one fake; thread-safe."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    traces: dict[str, StoredTrace] = field(default_factory=dict)
    models: dict[str, LoggedModel] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def signature(self, key: str) -> str:
        return hmac.new(self.secret, key.encode(), hashlib.sha256).hexdigest()


def tracking_store(fake: FakeWorkspace) -> TrackingStore:
    return fake.state.setdefault(STATE_KEY, TrackingStore())


def stored_traces(fake: FakeWorkspace) -> list[StoredTrace]:
    """Every trace the fake took, with its spans once uploaded, oldest first."""
    store = tracking_store(fake)
    with store.lock:
        return [
            dataclasses.replace(t, assessments=list(t.assessments)) for t in store.traces.values()
        ]


def stored_trace(fake: FakeWorkspace, trace_id: str) -> StoredTrace | None:
    store = tracking_store(fake)
    with store.lock:
        trace = store.traces.get(trace_id)
        return (
            None
            if trace is None
            else dataclasses.replace(trace, assessments=list(trace.assessments))
        )


def logged_models(fake: FakeWorkspace) -> list[dict[str, Any]]:
    store = tracking_store(fake)
    with store.lock:
        return [dict(m.info) for m in store.models.values()]


def unknown_tracking_calls(fake: FakeWorkspace) -> list[str]:
    """Recorded calls under the tracking prefixes that no route of the fake answers."""
    unknown = []
    for request in fake.requests:
        if not request.path.startswith(TRACKING_PREFIXES):
            continue
        if not any(
            r.method == request.method and r.pattern.fullmatch(request.path) for r in ROUTES
        ):
            unknown.append(f"{request.method} {request.path}")
    return unknown


@route("GET", "/__fake__/traces", auth=False)
async def admin_trace_counts(call: Call) -> Response:
    """How many traces the fake took, and how many of them have their spans uploaded."""
    store = tracking_store(call.fake)
    with store.lock:
        with_spans = sum(1 for trace in store.traces.values() if trace.data is not None)
        return JSONResponse({"traces": len(store.traces), "with_spans": with_spans})


def _invalid(message: str) -> JSONResponse:
    return error(400, "INVALID_PARAMETER_VALUE", message)


def _signed_url(call: Call, key: str) -> str:
    signature = tracking_store(call.fake).signature(key)
    return f"{call.base_url}{STORAGE_PREFIX}{quote(key)}?X-Fake-Signature={signature}"


def _credential(call: Call, key: str, path: str = "") -> dict[str, Any]:
    return {"path": path, "signed_uri": _signed_url(call, key), "type": "AWS_PRESIGNED_URL"}


# --- traces -------------------------------------------------------------------------------------


def _check_trace_info(info: Any) -> str | None:
    """What is wrong with a TraceInfoV3 in proto JSON, or None."""
    if not isinstance(info, dict):
        return "Missing required parameter 'trace.trace_info'."
    trace_id = info.get("trace_id")
    if not isinstance(trace_id, str) or not trace_id:
        return "Missing required parameter 'trace.trace_info.trace_id'."
    if not re.fullmatch(r"tr-[0-9a-f]{32}", trace_id):
        return f"Invalid trace ID '{trace_id}': expected 'tr-' and 32 hexadecimal digits."
    location = info.get("trace_location")
    if not isinstance(location, dict) or location.get("type") != "MLFLOW_EXPERIMENT":
        return "Invalid parameter 'trace.trace_info.trace_location': expected MLFLOW_EXPERIMENT."
    experiment = location.get("mlflow_experiment")
    if not isinstance(experiment, dict) or not experiment.get("experiment_id"):
        return "Missing required parameter 'trace_location.mlflow_experiment.experiment_id'."
    if info.get("state") not in TRACE_STATES:
        return f"Invalid trace state {info.get('state')!r}: expected one of {TRACE_STATES}."
    request_time = info.get("request_time")
    if not isinstance(request_time, str) or not re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", request_time
    ):
        return f"Invalid timestamp 'trace.trace_info.request_time': {request_time!r}."
    for name in ("trace_metadata", "tags"):
        values = info.get(name, {})
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            return f"Invalid parameter 'trace.trace_info.{name}': expected a map of strings."
    return None


@route("POST", "/api/3.0/mlflow/traces")
async def start_trace_v3(call: Call) -> Response:
    trace = call.body.get("trace") if isinstance(call.body, dict) else None
    if not isinstance(trace, dict):
        return _invalid("Missing required parameter 'trace'.")
    info = trace.get("trace_info")
    if (problem := _check_trace_info(info)) is not None:
        return _invalid(problem)
    experiment_id = str(info["trace_location"]["mlflow_experiment"]["experiment_id"])
    experiment = experiments(call.fake).get(experiment_id)
    if experiment is None or experiment.lifecycle_stage != "active":
        return error(
            404, "RESOURCE_DOES_NOT_EXIST", f"Experiment with id '{experiment_id}' does not exist."
        )
    trace_id = info["trace_id"]
    tags = {
        **info.get("tags", {}),
        "mlflow.artifactLocation": f"{ARTIFACT_ROOT}/{experiment_id}/{trace_id}/artifacts",
    }
    stored = {**info, "tags": tags}
    store = tracking_store(call.fake)
    with store.lock:
        if trace_id in store.traces:
            return error(409, "RESOURCE_ALREADY_EXISTS", f"Trace '{trace_id}' already exists.")
        store.traces[trace_id] = StoredTrace(stored)
    return JSONResponse({"trace": {"trace_info": stored}})


def _trace_or_404(call: Call) -> StoredTrace | Response:
    trace_id = call.params["trace_id"]
    trace = stored_trace(call.fake, trace_id)
    if trace is None:
        return error(404, "RESOURCE_DOES_NOT_EXIST", f"Trace with ID '{trace_id}' not found.")
    return trace


@route("GET", "/api/2.0/mlflow/traces/{trace_id}/credentials-for-data-upload")
async def trace_upload_credentials(call: Call) -> Response:
    trace = _trace_or_404(call)
    if isinstance(trace, Response):
        return trace
    key = f"traces/{trace.trace_id}/{TRACE_DATA_FILE}"
    return JSONResponse({"credential_info": _credential(call, key)})


@route("GET", "/api/2.0/mlflow/traces/{trace_id}/credentials-for-data-download")
async def trace_download_credentials(call: Call) -> Response:
    trace = _trace_or_404(call)
    if isinstance(trace, Response):
        return trace
    key = f"traces/{trace.trace_id}/{TRACE_DATA_FILE}"
    return JSONResponse({"credential_info": _credential(call, key)})


@route("GET", "/api/3.0/mlflow/traces/{trace_id}")
async def get_trace_info_v3(call: Call) -> Response:
    trace = _trace_or_404(call)
    if isinstance(trace, Response):
        return trace
    return JSONResponse({"trace": {"trace_info": trace.info}})


ASSESSMENT_SOURCES = ("HUMAN", "LLM_JUDGE", "CODE")


def _check_assessment(assessment: Any, trace_id: str) -> str | None:
    """What is wrong with a CreateAssessment's `assessment` (mlflow's assessments.proto)."""
    if not isinstance(assessment, dict):
        return "Missing required parameter 'assessment'."
    if not isinstance(assessment.get("assessment_name"), str) or not assessment["assessment_name"]:
        return "Missing required parameter 'assessment.assessment_name'."
    if assessment.get("trace_id") != trace_id:
        return f"assessment.trace_id must be the trace of the path, '{trace_id}'."
    source = assessment.get("source")
    if not isinstance(source, dict) or source.get("source_type") not in ASSESSMENT_SOURCES:
        return f"assessment.source.source_type must be one of {', '.join(ASSESSMENT_SOURCES)}."
    kinds = [kind for kind in ("feedback", "expectation") if kind in assessment]
    if len(kinds) != 1 or not isinstance(assessment[kinds[0]], dict):
        return "An assessment holds exactly one of 'feedback' or 'expectation'."
    return None


# mlflow.log_feedback on a trace id "tr-...": RestStore.create_assessment (mlflow 3.17,
# store/tracking/rest_store.py; the Databricks store defers to it for such ids).
@route("POST", "/api/3.0/mlflow/traces/{trace_id}/assessments")
async def create_assessment(call: Call) -> Response:
    trace_id = call.params["trace_id"]
    assessment = call.body.get("assessment") if isinstance(call.body, dict) else None
    if (problem := _check_assessment(assessment, trace_id)) is not None:
        return _invalid(problem)
    store = tracking_store(call.fake)
    with store.lock:
        trace = store.traces.get(trace_id)
        if trace is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Trace with ID '{trace_id}' not found.")
        created = {**assessment, "assessment_id": f"a-{next(store.ids):032x}"}
        trace.assessments.append(created)
    return JSONResponse({"assessment": created})


# --- logged models (version tracking) -----------------------------------------------------------


def _tags(values: Any) -> list[dict[str, str]] | None:
    if values is None:
        return []
    if not isinstance(values, list) or not all(
        isinstance(t, dict) and isinstance(t.get("key"), str) for t in values
    ):
        return None
    return [{"key": t["key"], "value": str(t.get("value", ""))} for t in values]


@route("POST", "/api/2.0/mlflow/logged-models")
async def create_logged_model(call: Call) -> Response:
    body = call.body if isinstance(call.body, dict) else {}
    experiment_id = str(body.get("experiment_id", ""))
    if not experiment_id:
        return _invalid("Missing required parameter 'experiment_id'.")
    if experiments(call.fake).get(experiment_id) is None:
        return error(
            404, "RESOURCE_DOES_NOT_EXIST", f"Experiment with id '{experiment_id}' does not exist."
        )
    tags = _tags(body.get("tags"))
    if tags is None:
        return _invalid("Invalid parameter 'tags': expected a list of {key, value}.")
    store = tracking_store(call.fake)
    now = int(time.time() * 1000)
    model_id = f"m-{uuid.uuid4().hex}"
    info = {
        "model_id": model_id,
        "experiment_id": experiment_id,
        "name": str(body.get("name") or f"model-{next(store.ids)}"),
        "creation_timestamp_ms": now,
        "last_updated_timestamp_ms": now,
        "artifact_uri": f"{ARTIFACT_ROOT}/{experiment_id}/logged_models/{model_id}/artifacts",
        "status": "LOGGED_MODEL_PENDING",
        "creator_id": 4242424242424242,
        "tags": tags,
    }
    for name in ("model_type", "source_run_id"):
        if body.get(name):
            info[name] = str(body[name])
    with store.lock:
        store.models[model_id] = LoggedModel(info)
    return JSONResponse({"model": {"info": info, "data": {}}})


def _model_or_404(call: Call) -> LoggedModel | Response:
    model_id = call.params["model_id"]
    store = tracking_store(call.fake)
    with store.lock:
        model = store.models.get(model_id)
    if model is None:
        return error(404, "RESOURCE_DOES_NOT_EXIST", f"Logged model '{model_id}' not found.")
    return model


@route("GET", "/api/2.0/mlflow/logged-models/{model_id}")
async def get_logged_model(call: Call) -> Response:
    model = _model_or_404(call)
    if isinstance(model, Response):
        return model
    return JSONResponse({"model": {"info": model.info, "data": {}}})


@route("PATCH", "/api/2.0/mlflow/logged-models/{model_id}")
async def finalize_logged_model(call: Call) -> Response:
    model = _model_or_404(call)
    if isinstance(model, Response):
        return model
    status = call.body.get("status") if isinstance(call.body, dict) else None
    if status not in ("LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"):
        return _invalid(f"Invalid parameter 'status': {status!r}.")
    with tracking_store(call.fake).lock:
        model.info.update(status=status, last_updated_timestamp_ms=int(time.time() * 1000))
    return JSONResponse({"model": {"info": model.info, "data": {}}})


@route("POST", "/api/2.0/mlflow/logged-models/search")
async def search_logged_models(call: Call) -> Response:
    body = call.body if isinstance(call.body, dict) else {}
    experiment_ids = body.get("experiment_ids")
    if not isinstance(experiment_ids, list) or not experiment_ids:
        return _invalid("Missing required parameter 'experiment_ids'.")
    wanted_name = None
    if filter_string := body.get("filter"):
        # Only the filter mlflow.set_active_model sends: name='<name>'.
        match = re.fullmatch(r"\s*name\s*=\s*'([^']*)'\s*", str(filter_string))
        if match is None:
            return _invalid(f"Unsupported filter in the fake workspace: {filter_string!r}.")
        wanted_name = match.group(1)
    models = [
        {"info": info, "data": {}}
        for info in sorted(
            logged_models(call.fake), key=lambda i: i["creation_timestamp_ms"], reverse=True
        )
        if info["experiment_id"] in {str(e) for e in experiment_ids}
        and (wanted_name is None or info["name"] == wanted_name)
    ]
    return JSONResponse({"models": models[: int(body.get("max_results") or 100)]})


@route("POST", "/api/2.0/mlflow/logged-models/{model_id}/artifacts/credentials-for-upload")
async def logged_model_upload_credentials(call: Call) -> Response:
    model = _model_or_404(call)
    if isinstance(model, Response):
        return model
    paths = call.body.get("paths") if isinstance(call.body, dict) else None
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        return _invalid("Missing required parameter 'paths'.")
    model_id = model.info["model_id"]
    credentials = [
        {"credential_info": _credential(call, f"logged_models/{model_id}/{path}", path)}
        for path in paths
    ]
    return JSONResponse({"credentials": credentials})


# --- the cloud storage behind presigned URLs ----------------------------------------------------


def _storage_key(call: Call) -> str | Response:
    key = call.params["key"]
    signature = parse_qs(call.request.url.query).get("X-Fake-Signature", [""])[0]
    expected = tracking_store(call.fake).signature(key)
    if not hmac.compare_digest(signature, expected):
        return Response("SignatureDoesNotMatch", status_code=403, media_type="text/plain")
    return key


async def storage_put(call: Call) -> Response:
    key = _storage_key(call)
    if isinstance(key, Response):
        return key
    content = await call.request.body()
    trace_match = re.fullmatch(rf"traces/(tr-[0-9a-f]+)/{TRACE_DATA_FILE}", key)
    if trace_match:
        try:
            data = json.loads(content)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("spans"), list):
            return Response("MalformedTraceData", status_code=400, media_type="text/plain")
    store = tracking_store(call.fake)
    with store.lock:
        store.objects[key] = content
        if trace_match and (trace := store.traces.get(trace_match.group(1))) is not None:
            trace.data = data
    return Response(status_code=200)


async def storage_get(call: Call) -> Response:
    key = _storage_key(call)
    if isinstance(key, Response):
        return key
    store = tracking_store(call.fake)
    with store.lock:
        content = store.objects.get(key)
    if content is None:
        return Response("NoSuchKey", status_code=404, media_type="text/plain")
    return Response(content, media_type="application/octet-stream")


# A presigned URL carries its own authorization: no workspace token.
for _method, _handler in (("PUT", storage_put), ("GET", storage_get)):
    ROUTES.append(Route(_method, re.compile(rf"{STORAGE_PREFIX}(?P<key>.+)"), _handler, False))


# --- faults for the whole tracking store ---------------------------------------------------------


def _with_tracking_faults(handler: Handler) -> Handler:
    async def faulty(call: Call) -> Response:
        if call.settings.tracking_delay and not await call.pause(call.settings.tracking_delay):
            return error(503, "TEMPORARILY_UNAVAILABLE", "The fake workspace is stopping.")
        if call.settings.tracking_status is not None:
            status = call.settings.tracking_status
            return error(status, "INTERNAL_ERROR", f"Injected tracking store fault ({status}).")
        return await handler(call)

    return faulty


def _install() -> None:
    """Wrap every route under the tracking prefixes with the faults (once, at import)."""
    for index, candidate in enumerate(ROUTES):
        if candidate.pattern.pattern.replace("\\", "").startswith(TRACKING_PREFIXES):
            ROUTES[index] = dataclasses.replace(
                candidate, handler=_with_tracking_faults(candidate.handler)
            )


_install()
