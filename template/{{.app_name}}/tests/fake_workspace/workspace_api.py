"""Workspace REST API routes: host metadata, the current user, serving endpoints."""

from __future__ import annotations

import hashlib

from starlette.responses import JSONResponse, Response

from .core import IDENTITIES, WORKSPACE_ID, Call, endpoint_exists, error, no_such_endpoint, route
from .serving_api import configured_endpoint


@route("GET", "/.well-known/databricks-config", auth=False)
async def host_metadata(call: Call) -> Response:
    # Parsed by databricks.sdk.oauth.HostMetadata.from_dict (cloud is case-insensitive).
    return JSONResponse(
        {"oidc_endpoint": f"{call.base_url}/oidc", "workspace_id": WORKSPACE_ID, "cloud": "aws"}
    )


@route("GET", "/api/2.0/preview/scim/v2/Me")
async def current_user(call: Call) -> Response:
    me = IDENTITIES[call.settings.identity]
    return JSONResponse({**me, "userName": call.settings.user_name or me["userName"]})


@route("GET", "/api/2.0/genie/spaces/{space_id}")
async def get_genie_space(call: Call) -> Response:
    # databricks-sdk's GenieAPI.get_space reads this as a GenieSpace.
    space_id = call.params["space_id"]
    if space_id in call.settings.genie_spaces_missing:
        return error(404, "RESOURCE_DOES_NOT_EXIST", f"Genie space {space_id} does not exist.")
    return JSONResponse(
        {
            "space_id": space_id,
            "title": f"Space {space_id[:8]}",
            "warehouse_id": call.settings.genie_warehouse_id,
        }
    )


@route("GET", "/api/2.0/serving-endpoints/{name}")
async def get_serving_endpoint(call: Call) -> Response:
    name = call.params["name"]
    if (configured := configured_endpoint(call.settings, name)) is not None:
        return JSONResponse(configured)
    if not endpoint_exists(call.settings, name):
        return no_such_endpoint(name)
    entity = {"name": name, "entity_name": name, "foundation_model": {"name": name}}
    return JSONResponse(
        {
            "name": name,
            "id": hashlib.sha1(name.encode()).hexdigest()[:32],
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": {"served_entities": [entity]},
            "task": "llm/v1/chat",
            "endpoint_type": "FOUNDATION_MODEL_API",
        }
    )
