"""Lakebase: the calls databricks-langchain's memory makes, for provisioned instances and for
Autoscaling projects (below).

Provisioned instances:

    GET  /api/2.0/database/instances/{name}   the instance; its read_write_dns is the host
    POST /api/2.0/database/credentials        a short-lived PostgreSQL password

The host is the `lakebase_host` setting: the tests point it at a real local PostgreSQL (a
socket directory, see tests/postgres.py); no instance exists while it is empty. The password
is the `lakebase_token` setting, which that PostgreSQL accepts for the fake's user.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from starlette.responses import JSONResponse, Response

from .core import Call, error, route

CREDENTIAL_LIFETIME_SECONDS = 3600


def _instance(call: Call, name: str) -> dict[str, object]:
    return {
        "name": name,
        "uid": f"uid-{name}",
        "state": "AVAILABLE",
        "capacity": "CU_1",
        "pg_version": "PG_VERSION_16",
        "read_write_dns": call.settings.lakebase_host,
        "creator": "tester@example.com",
        "creation_time": "2026-01-01T00:00:00Z",
    }


@route("GET", "/api/2.0/database/instances/{name}")
async def get_instance(call: Call) -> Response:
    name = call.params["name"]
    if not call.settings.lakebase_host:
        return error(404, "RESOURCE_DOES_NOT_EXIST", f"Database instance '{name}' does not exist.")
    return JSONResponse(_instance(call, name))


@route("POST", "/api/2.0/database/credentials")
async def generate_credential(call: Call) -> Response:
    body = call.body if isinstance(call.body, dict) else {}
    names = body.get("instance_names") or []
    if not call.settings.lakebase_host or not names:
        return error(404, "RESOURCE_DOES_NOT_EXIST", f"No database instance among {names}.")
    expires = datetime.fromtimestamp(time.time(), UTC) + timedelta(
        seconds=CREDENTIAL_LIFETIME_SECONDS
    )
    return JSONResponse(
        {
            "token": call.settings.lakebase_token,
            "expiration_time": expires.isoformat().replace("+00:00", "Z"),
        }
    )


# --- Lakebase Autoscaling: projects/{project}/branches/{branch}/endpoints/{endpoint} -------------
#
# The calls of databricks-ai-bridge's Lakebase pools (`project`/`branch`, or an endpoint from
# the app's `postgres` resource), as databricks-sdk 0.79 to 0.167 make them
# (databricks/sdk/service/postgres.py, PostgresAPI):
#   GET  /api/2.0/postgres/{parent}/endpoints  list_endpoints -> {"endpoints", "next_page_token"}
#   GET  /api/2.0/postgres/{name}              get_endpoint
#   POST /api/2.0/postgres/credentials         generate_database_credential {"endpoint": name}
#                                              -> {"token", "expire_time"}
# Every project and branch exists while `lakebase_host` is set; each branch has one read-write
# endpoint, ENDPOINT_ID, whose host is `lakebase_host`.

ENDPOINT_ID = "primary"
_ID = r"[a-z0-9][a-z0-9-]{0,62}"  # project, branch and endpoint ids (lowercase, digits, -)
_ENDPOINT_NAME = re.compile(rf"projects/({_ID})/branches/({_ID})/endpoints/({_ID})")


def _endpoint(call: Call, project: str, branch: str) -> dict[str, object]:
    parent = f"projects/{project}/branches/{branch}"
    return {
        "name": f"{parent}/endpoints/{ENDPOINT_ID}",
        "parent": parent,
        "uid": f"ep-{project}-{branch}",
        "create_time": "2026-03-12T00:00:00Z",
        "status": {
            "endpoint_id": ENDPOINT_ID,
            "endpoint_type": "ENDPOINT_TYPE_READ_WRITE",
            "current_state": "ACTIVE",
            "autoscaling_limit_min_cu": 0.5,
            "autoscaling_limit_max_cu": 4.0,
            "hosts": {"host": call.settings.lakebase_host},
        },
    }


def _bad_ids(*ids: str) -> Response | None:
    for value in ids:
        if not re.fullmatch(_ID, value):
            return error(400, "INVALID_PARAMETER_VALUE", f"Invalid resource id: {value!r}.")
    return None


def _no_branch(project: str, branch: str) -> Response:
    return error(404, "NOT_FOUND", f"Branch 'projects/{project}/branches/{branch}' does not exist.")


@route("GET", "/api/2.0/postgres/projects/{project}/branches/{branch}/endpoints")
async def list_endpoints(call: Call) -> Response:
    project, branch = call.params["project"], call.params["branch"]
    if bad := _bad_ids(project, branch):
        return bad
    if not call.settings.lakebase_host:
        return _no_branch(project, branch)
    return JSONResponse({"endpoints": [_endpoint(call, project, branch)]})


@route("GET", "/api/2.0/postgres/projects/{project}/branches/{branch}/endpoints/{endpoint}")
async def get_endpoint(call: Call) -> Response:
    project, branch, endpoint = (call.params[k] for k in ("project", "branch", "endpoint"))
    if bad := _bad_ids(project, branch, endpoint):
        return bad
    if not call.settings.lakebase_host:
        return _no_branch(project, branch)
    if endpoint != ENDPOINT_ID:
        name = f"projects/{project}/branches/{branch}/endpoints/{endpoint}"
        return error(404, "NOT_FOUND", f"Endpoint '{name}' does not exist.")
    return JSONResponse(_endpoint(call, project, branch))


@route("POST", "/api/2.0/postgres/credentials")
async def generate_postgres_credential(call: Call) -> Response:
    body = call.body if isinstance(call.body, dict) else {}
    name = body.get("endpoint")
    match = _ENDPOINT_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        return error(
            400,
            "INVALID_PARAMETER_VALUE",
            "endpoint must be projects/{project_id}/branches/{branch_id}/endpoints/{endpoint_id}",
        )
    if not call.settings.lakebase_host or match.group(3) != ENDPOINT_ID:
        return error(404, "NOT_FOUND", f"Endpoint '{name}' does not exist.")
    expires = datetime.fromtimestamp(time.time(), UTC) + timedelta(
        seconds=CREDENTIAL_LIFETIME_SECONDS
    )
    return JSONResponse(
        {
            "token": call.settings.lakebase_token,
            "expire_time": expires.isoformat().replace("+00:00", "Z"),
        }
    )
