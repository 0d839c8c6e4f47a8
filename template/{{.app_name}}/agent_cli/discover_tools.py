"""`uv run discover-tools`: what the signed-in user can give the agent as tools.

Lists Genie spaces, Vector Search indexes, schemas with Unity Catalog functions, Unity
Catalog connections, SQL warehouses and serving endpoints, then prints the `databricks bundle
init` prompt values that pick the first of each that fits (`--json`: a ready `--config-file`), and
the databricks.yml app resources that give them to this project. A listing the user may not
read is reported, and the others are still printed.

Authenticates as `uv run quickstart` does: `--profile`/`--host`, else .env, else the
environment, else (at a terminal) a profile you pick.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError

from agent_cli import console, options
from agent_cli.console import CliError
from agent_cli.env_file import EnvFile
from agent_cli.quickstart import choose_auth
from agent_cli.workspace_auth import (
    DEFAULT_TIMEOUT_SECONDS,
    Auth,
    connect,
    short_error,
    unreachable,
)

DEFAULT_LIMIT = 20
# Unity Catalog's own schema of every catalog: views, never functions to give an agent.
SYSTEM_SCHEMA = "information_schema"
CHAT_TASK = "llm/v1/chat"


@dataclass(frozen=True)
class Found:
    value: str  # what the prompt takes
    label: str  # what a person recognizes it by
    suits_prompt: bool = True  # False: listed, but not what the prompt asks for
    members: tuple[str, ...] = ()  # the functions of a schema


@dataclass(frozen=True)
class Kind:
    title: str
    prompt: str  # the `databricks bundle init` prompt (databricks_template_schema.json)
    resource: Callable[[Found], str]  # its databricks.yml app resources
    list_values: Callable[[WorkspaceClient, str | None], Iterator[Found]]


@dataclass(frozen=True)
class Listing:
    kind: Kind
    found: list[Found]
    problem: str | None  # why the listing could not be read, if it could not


# --- The listings (databricks-sdk's WorkspaceClient; the iterators follow next_page_token) ----


def genie_spaces(client: WorkspaceClient, catalog: str | None) -> Iterator[Found]:
    # GenieAPI.list_spaces answers one page (GenieListSpacesResponse): follow the pages here.
    page_token: str | None = None
    while True:
        page = client.genie.list_spaces(page_token=page_token)
        for space in page.spaces or []:
            yield Found(space.space_id, space.title or "")
        if not page.next_page_token:
            return
        page_token = page.next_page_token


def vector_search_indexes(client: WorkspaceClient, catalog: str | None) -> Iterator[Found]:
    for endpoint in client.vector_search_endpoints.list_endpoints():
        if not endpoint.name:
            continue
        for index in client.vector_search_indexes.list_indexes(endpoint.name):
            name = index.name or ""
            if name and (catalog is None or name.startswith(f"{catalog}.")):
                yield Found(name, f"endpoint {endpoint.name}")


def function_schemas(client: WorkspaceClient, catalog: str | None) -> Iterator[Found]:
    """Schemas holding functions, as catalog.schema (the prompt also takes one function)."""
    catalogs = [catalog] if catalog else (c.name for c in client.catalogs.list() if c.name)
    for catalog_name in catalogs:
        for schema in client.schemas.list(catalog_name=catalog_name):
            if not schema.name or schema.name == SYSTEM_SCHEMA:
                continue
            names = [
                f.name
                for f in client.functions.list(catalog_name=catalog_name, schema_name=schema.name)
                if f.name
            ]
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                count = f"{len(names)} function{'s' if len(names) > 1 else ''}"
                yield Found(
                    f"{catalog_name}.{schema.name}", f"{count}: {shown}", members=tuple(names)
                )


def connections(client: WorkspaceClient, catalog: str | None) -> Iterator[Found]:
    for connection in client.connections.list():
        if connection.name:
            kind = connection.connection_type.value if connection.connection_type else ""
            yield Found(connection.name, kind)


def sql_warehouses(client: WorkspaceClient, catalog: str | None) -> Iterator[Found]:
    for warehouse in client.warehouses.list():
        if warehouse.id:
            state = f" ({warehouse.state.value})" if warehouse.state else ""
            yield Found(warehouse.id, f"{warehouse.name or ''}{state}")


def serving_endpoints(client: WorkspaceClient, catalog: str | None) -> Iterator[Found]:
    for endpoint in client.serving_endpoints.list():
        if endpoint.name:
            # The agent's LLM answers chat completions; other endpoints are listed for context.
            task = endpoint.task or ""
            yield Found(endpoint.name, task, suits_prompt=task == CHAT_TASK)


def _resource(name: str, kind: str, /, **fields: str) -> str:
    """An app resource as databricks.yml lists it under resources.apps.<app>.resources."""
    lines = [f"- name: {name}", f"  {kind}:", *(f"    {k}: {v}" for k, v in fields.items())]
    return "\n".join(lines)


def _quoted(value: str) -> str:
    return json.dumps(value)


def _securable(name: str, securable_type: str, full_name: str, permission: str) -> str:
    return _resource(
        name,
        "uc_securable",
        securable_type=securable_type,
        securable_full_name=_quoted(full_name),
        permission=permission,
    )


def _function_resources(found: Found) -> str:
    # App resources grant EXECUTE on one function each: there is no schema-wide securable type.
    return "\n".join(
        _securable(
            f"uc-function-{name.replace('_', '-')}", "FUNCTION", f"{found.value}.{name}", "EXECUTE"
        )
        for name in found.members
    )


# The resources mirror the ones databricks.yml has when the prompt is answered at init.
KINDS = (
    Kind(
        "Genie spaces",
        "genie_space_id",
        lambda f: _resource(
            "genie-space",
            "genie_space",
            name=_quoted(f.value),
            space_id=_quoted(f.value),
            permission="CAN_RUN",
        ),
        genie_spaces,
    ),
    Kind(
        "Vector Search indexes",
        "vector_search_index",
        lambda f: _securable("vector-search-index", "TABLE", f.value, "SELECT"),
        vector_search_indexes,
    ),
    Kind(
        "Unity Catalog functions (by schema)",
        "uc_function_schema",
        _function_resources,
        function_schemas,
    ),
    Kind(
        "Unity Catalog connections",
        "uc_connection",
        lambda f: _securable("uc-connection", "CONNECTION", f.value, "USE_CONNECTION"),
        connections,
    ),
    Kind(
        "SQL warehouses",
        "sql_warehouse_id",
        lambda f: _resource(
            "sql-warehouse", "sql_warehouse", id=_quoted(f.value), permission="CAN_USE"
        ),
        sql_warehouses,
    ),
    Kind(
        "Serving endpoints",
        "serving_endpoint",
        # The project names its LLM endpoint in a bundle variable, not in a resource of its own.
        lambda f: f"# uv run deploy --var serving_endpoint={f.value}",
        serving_endpoints,
    ),
)


def read_listing(
    kind: Kind,
    client: WorkspaceClient,
    catalog: str | None,
    limit: int,
    auth: Auth,
    host: str,
    timeout: float,
) -> Listing:
    """Up to `limit` of `kind`; a refusal (e.g. 403) becomes the listing's problem."""
    try:
        return Listing(kind, list(islice(kind.list_values(client, catalog), limit)), None)
    except DatabricksError as exc:
        return Listing(kind, [], f"cannot list {kind.title.lower()}: {short_error(exc)}")
    except OSError as exc:  # no answer in time (DatabricksError, an OSError too, came first)
        raise unreachable(auth, host, timeout, exc) from None


# --- Output ----------------------------------------------------------------------------------


def config_values(listings: Iterable[Listing]) -> dict[str, str]:
    """The prompt values that pick the first of each kind that fits its prompt."""
    return {
        listing.kind.prompt: first.value
        for listing in listings
        if (first := _first_suitable(listing)) is not None
    }


def _first_suitable(listing: Listing) -> Found | None:
    return next((found for found in listing.found if found.suits_prompt), None)


def print_text(listings: list[Listing], limit: int) -> None:
    for listing in listings:
        console.heading(f"{listing.kind.title} ({listing.kind.prompt})")
        if listing.problem:
            console.warn(listing.problem)
        elif not listing.found:
            console.say("  none")
        width = max((len(found.value) for found in listing.found), default=0)
        for found in listing.found:
            console.say(f"  {found.value:<{width}}  {found.label}".rstrip())
        if len(listing.found) == limit:
            console.say(f"  (at most {limit} shown: a higher --limit shows more)")
    values = config_values(listings)
    if not values:
        return
    console.heading(
        "`databricks bundle init` prompt values (the first that fits; --json: a config file)"
    )
    for prompt, value in values.items():
        console.say(f"  {prompt}: {value}")
    console.heading("databricks.yml app resources for this project (resources.apps.*.resources)")
    for listing in listings:
        if (first := _first_suitable(listing)) is not None:
            resource = listing.kind.resource(first)
            console.say("\n".join(f"  {line}" for line in resource.splitlines()))


# --- The command -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="discover-tools",
        description="List what you can give the agent (Genie spaces, Vector Search indexes, "
        "Unity Catalog functions and connections, SQL warehouses, serving endpoints) and "
        "print the `databricks bundle init` prompt values and databricks.yml resources "
        "for them.",
    )
    workspace = parser.add_mutually_exclusive_group()
    workspace.add_argument(
        "--profile", metavar="NAME", help="Databricks config profile (default: the one in .env)"
    )
    workspace.add_argument(
        "--host", metavar="URL", help="workspace URL, authenticated from the environment"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print only a `databricks bundle init --config-file` JSON: the first of each",
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"at most N of each kind (default: {DEFAULT_LIMIT})",
    )
    parser.add_argument(
        "--catalog",
        metavar="NAME",
        help="only Unity Catalog functions and Vector Search indexes of this catalog",
    )
    options.add_env_file(parser, "file to read the workspace from")
    options.add_seconds(parser, "--timeout", DEFAULT_TIMEOUT_SECONDS, "the workspace")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    if args.timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    env = EnvFile.load(args.env_file)
    auth, source = choose_auth(args, env)
    workspace = connect(auth, args.timeout)
    listings = [
        read_listing(
            kind, workspace.client, args.catalog, args.limit, auth, workspace.host, args.timeout
        )
        for kind in KINDS
    ]
    if args.json:
        for listing in listings:
            if listing.problem:
                console.error(listing.problem)
        json.dump(config_values(listings), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return console.EXIT_OK
    console.say(f"{workspace.host} as {workspace.user_name} ({auth}, from {source})")
    print_text(listings, args.limit)
    return console.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return console.guard(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
