"""The list routes `uv run discover-tools` calls, as databricks-sdk's service code calls them.

What they list is the `listings` setting: by kind (the keys of DEFAULT_LISTINGS), the items as
the workspace returns them. `listings_forbidden` names kinds that answer 403, and `page_size`
splits every paged answer into pages of that many items (0: one page), e.g.

    fake.configure(page_size=1, listings_forbidden=["connections"])
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from .core import Call, error, route

DEFAULT_LISTINGS: dict[str, list[dict[str, Any]]] = {
    "genie_spaces": [
        {"space_id": "01ef0000000000000000000000000001", "title": "Sales"},
        {"space_id": "01ef0000000000000000000000000002", "title": "Support"},
    ],
    "vector_search_endpoints": [{"name": "vs-endpoint", "endpoint_type": "STANDARD"}],
    "vector_search_indexes": [
        {"name": "main.docs.chunks_index", "endpoint_name": "vs-endpoint"},
        {"name": "other.docs.faq_index", "endpoint_name": "vs-endpoint"},
    ],
    "catalogs": [{"name": "main"}, {"name": "other"}],
    "schemas": [
        {"name": "information_schema", "catalog_name": "main"},
        {"name": "tools", "catalog_name": "main"},
        {"name": "empty", "catalog_name": "main"},
        {"name": "more_tools", "catalog_name": "other"},
    ],
    "functions": [
        {"name": "lookup_customer", "catalog_name": "main", "schema_name": "tools"},
        {"name": "lookup_order", "catalog_name": "main", "schema_name": "tools"},
        {"name": "convert", "catalog_name": "other", "schema_name": "more_tools"},
    ],
    "connections": [{"name": "github_mcp", "connection_type": "HTTP"}],
    "warehouses": [{"id": "a1b2c3d4e5f60718", "name": "Starter Warehouse", "state": "RUNNING"}],
    "serving_endpoints": [
        {"name": "databricks-claude-sonnet-4-5", "task": "llm/v1/chat"},
        {"name": "databricks-gte-large-en", "task": "llm/v1/embeddings"},
    ],
}


def _items(call: Call, kind: str, **filters: str | None) -> list[dict[str, Any]] | Response:
    if kind in call.settings.listings_forbidden:
        message = f"User does not have permission to list {kind.replace('_', ' ')}."
        return error(403, "PERMISSION_DENIED", message)
    listings = call.settings.listings if call.settings.listings is not None else DEFAULT_LISTINGS
    return [
        item
        for item in listings.get(kind, [])
        if all(value is None or item.get(key) == value for key, value in filters.items())
    ]


def _paged(call: Call, kind: str, key: str, **filters: str | None) -> Response:
    """`key` holding one page of the items, with next_page_token while more remain."""
    items = _items(call, kind, **filters)
    if isinstance(items, Response):
        return items
    start = int(call.request.query_params.get("page_token") or 0)
    size = call.settings.page_size or len(items) or 1
    body: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        body["next_page_token"] = str(start + size)
    return JSONResponse(body)


@route("GET", "/api/2.0/genie/spaces")
async def list_genie_spaces(call: Call) -> Response:
    return _paged(call, "genie_spaces", "spaces")


@route("GET", "/api/2.0/vector-search/endpoints")
async def list_vector_search_endpoints(call: Call) -> Response:
    return _paged(call, "vector_search_endpoints", "endpoints")


@route("GET", "/api/2.0/vector-search/indexes")
async def list_vector_search_indexes(call: Call) -> Response:
    endpoint = call.request.query_params.get("endpoint_name")
    return _paged(call, "vector_search_indexes", "vector_indexes", endpoint_name=endpoint)


@route("GET", "/api/2.1/unity-catalog/catalogs")
async def list_catalogs(call: Call) -> Response:
    return _paged(call, "catalogs", "catalogs")


@route("GET", "/api/2.1/unity-catalog/schemas")
async def list_schemas(call: Call) -> Response:
    catalog = call.request.query_params.get("catalog_name")
    return _paged(call, "schemas", "schemas", catalog_name=catalog)


@route("GET", "/api/2.1/unity-catalog/functions")
async def list_functions(call: Call) -> Response:
    query = call.request.query_params
    return _paged(
        call,
        "functions",
        "functions",
        catalog_name=query.get("catalog_name"),
        schema_name=query.get("schema_name"),
    )


@route("GET", "/api/2.1/unity-catalog/connections")
async def list_connections(call: Call) -> Response:
    return _paged(call, "connections", "connections")


@route("GET", "/api/2.0/sql/warehouses")
async def list_warehouses(call: Call) -> Response:
    return _paged(call, "warehouses", "warehouses")


@route("GET", "/api/2.0/serving-endpoints")
async def list_serving_endpoints(call: Call) -> Response:
    # ServingEndpointsAPI.list reads one answer (ListEndpointsResponse): the API has no pages.
    items = _items(call, "serving_endpoints")
    return items if isinstance(items, Response) else JSONResponse({"endpoints": items})
