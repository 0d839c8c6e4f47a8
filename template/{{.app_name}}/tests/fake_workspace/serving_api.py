"""Serving endpoints that serve registered models (agents), for `uv run migrate --endpoint`.

By default the fake answers GET /api/2.0/serving-endpoints/{name} with a foundation-model
endpoint for any name. The `serving_endpoints` setting replaces that answer, by name, with a
full endpoint: build one with `agent_endpoint()`, e.g.

    fake.configure(serving_endpoints={"my-agent": agent_endpoint("my-agent", [
        served_model("main.agents.chat", "3", traffic=100),
    ])})
"""

from __future__ import annotations

import hashlib
from typing import Any

from .core import Settings


def served_model(
    entity_name: str,
    entity_version: str,
    *,
    traffic: int,
    name: str | None = None,
    environment_vars: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One served entity (a registered model version) with its share of the traffic."""
    served = {
        "name": name or f"{entity_name.rsplit('.', 1)[-1]}-{entity_version}",
        "entity_name": entity_name,
        "entity_version": entity_version,
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
        "state": {"deployment": "DEPLOYMENT_READY"},
        "traffic_percentage": traffic,
    }
    if environment_vars:
        served["environment_vars"] = environment_vars
    return served


def agent_endpoint(name: str, served: list[dict[str, Any]]) -> dict[str, Any]:
    """A serving endpoint spec, as the workspace returns it, for entities from served_model()."""
    entities = [{k: v for k, v in s.items() if k != "traffic_percentage"} for s in served]
    routes = [
        {
            "served_model_name": s["name"],
            "served_entity_name": s["name"],
            "traffic_percentage": s["traffic_percentage"],
        }
        for s in served
    ]
    return {
        "name": name,
        "id": hashlib.sha1(name.encode()).hexdigest()[:32],
        "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
        "config": {
            "served_entities": entities,
            "traffic_config": {"routes": routes},
            "config_version": 1,
        },
        "task": "agent/v1/responses",
        "endpoint_type": "CUSTOM_MODEL",
    }


def configured_endpoint(settings: Settings, name: str) -> dict[str, Any] | None:
    """The endpoint set for `name` in the `serving_endpoints` setting, if any."""
    return (settings.serving_endpoints or {}).get(name)
