"""The admin API of the fake itself (not recorded, no token): settings and requests."""

from __future__ import annotations

import dataclasses

from starlette.responses import JSONResponse, Response

from .core import Call, error, route


@route("GET", "/__fake__/config", auth=False)
async def admin_get_config(call: Call) -> Response:
    return JSONResponse(call.fake.settings.as_json())


@route("POST", "/__fake__/config", auth=False)
async def admin_configure(call: Call) -> Response:
    if not isinstance(call.body, dict):
        return error(400, "INVALID_PARAMETER_VALUE", "expected a JSON object of settings")
    try:
        call.fake.configure(**call.body)
    except (TypeError, ValueError) as e:
        return error(400, "INVALID_PARAMETER_VALUE", str(e))
    return JSONResponse(call.fake.settings.as_json())


@route("GET", "/__fake__/requests", auth=False)
async def admin_requests(call: Call) -> Response:
    return JSONResponse([dataclasses.asdict(r) for r in call.fake.requests])


@route("DELETE", "/__fake__/requests", auth=False)
async def admin_clear_requests(call: Call) -> Response:
    call.fake.clear_requests()
    return JSONResponse({})
