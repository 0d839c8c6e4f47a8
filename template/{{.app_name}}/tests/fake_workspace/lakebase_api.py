"""Lakebase (provisioned database instances): the calls databricks-langchain's memory makes.

    GET  /api/2.0/database/instances/{name}   the instance; its read_write_dns is the host
    POST /api/2.0/database/credentials        a short-lived PostgreSQL password

The host is the `lakebase_host` setting: the tests point it at a real local PostgreSQL (a
socket directory, see tests/postgres.py); no instance exists while it is empty. The password
is the `lakebase_token` setting, which that PostgreSQL accepts for the fake's user.
"""

from __future__ import annotations

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
