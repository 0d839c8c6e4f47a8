"""The model's declared resources (MLmodel `resources`, `auth_policy`) as Databricks App resources.

Model Serving grants the endpoint access to what the MLmodel declares; on Apps the same access
comes from app resources, granted to the app's service principal, and from `user_api_scopes` for
what the agent does on behalf of the calling user. Field names and permissions follow the bundle
schema (apps.AppResource*), checked by the project's tests.

Plain Python on purpose: no third-party imports, so the mapping can be checked on its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_API_VERSION = "1"
# App resource names: at most 30 letters, digits, hyphens and underscores (the Apps API answers
# 400 INVALID_PARAMETER_VALUE beyond 30 characters; databricks.yml's own names keep to it too).
MAX_RESOURCE_NAME = 30
# Names the template's own app resources use.
RESERVED_NAMES = frozenset({"experiment", "serving-endpoint"})
# Provisioned Lakebase instances serve this database unless told otherwise.
LAKEBASE_DATABASE = "databricks_postgres"


@dataclass(frozen=True)
class Rule:
    """How one MLmodel resource type becomes an app resource."""

    app_kind: str  # the app resource's key: serving_endpoint, uc_securable, ...
    label: str  # prefix of the generated resource name
    spec: Callable[[str], dict[str, str]]  # the app resource's fields, from the MLmodel name
    permission: str
    user_scopes: tuple[str, ...]  # Apps user authorization scopes for on-behalf-of-user use


def _uc(securable_type: str) -> Callable[[str], dict[str, str]]:
    return lambda name: {"securable_full_name": name, "securable_type": securable_type}


RULES: dict[str, Rule] = {
    "serving_endpoint": Rule(
        "serving_endpoint",
        "serving-endpoint",
        lambda name: {"name": name},
        "CAN_QUERY",
        ("serving.serving-endpoints",),
    ),
    "lakebase": Rule(
        "database",
        "lakebase",
        lambda name: {"instance_name": name, "database_name": LAKEBASE_DATABASE},
        "CAN_CONNECT_AND_CREATE",
        (),
    ),
    "vector_search_index": Rule(
        "uc_securable",
        "vector-index",
        _uc("TABLE"),
        "SELECT",
        ("vectorsearch.vector-search-indexes",),
    ),
    "function": Rule("uc_securable", "function", _uc("FUNCTION"), "EXECUTE", ("sql",)),
    "table": Rule("uc_securable", "table", _uc("TABLE"), "SELECT", ("sql",)),
    "uc_connection": Rule(
        "uc_securable", "connection", _uc("CONNECTION"), "USE_CONNECTION", ("catalog.connections",)
    ),
    "sql_warehouse": Rule(
        "sql_warehouse", "sql-warehouse", lambda name: {"id": name}, "CAN_USE", ("sql",)
    ),
    "genie_space": Rule(
        "genie_space",
        "genie-space",
        # MLflow records only the space id; the bundle also wants a name for the space.
        lambda name: {"name": name, "space_id": name},
        "CAN_RUN",
        ("dashboards.genie",),
    ),
    "app": Rule("app", "app", lambda name: {"name": name}, "CAN_USE", ()),
}

# Model Serving user scopes whose Apps equivalent has another name.
USER_SCOPE_ALIASES = {
    "sql.statement-execution": "sql",
    "sql.warehouses": "sql",
}
KNOWN_USER_SCOPES = frozenset(
    {
        "sql",
        "serving.serving-endpoints",
        "vectorsearch.vector-search-indexes",
        "vectorsearch.vector-search-endpoints",
        "dashboards.genie",
        "files.files",
        "catalog.connections",
        "catalog.catalogs:read",
        "catalog.schemas:read",
        "catalog.tables:read",
    }
)


class UnknownResourceType(ValueError):
    pass


@dataclass(frozen=True)
class Declared:
    """One resource the MLmodel declares."""

    type: str
    name: str
    on_behalf_of_user: bool
    origin: str  # "resources" or "auth_policy.system_auth_policy"


@dataclass(frozen=True)
class Mapped:
    declared: Declared
    entry: dict[str, Any] | None  # the app resource; None when the user's identity is used
    scopes: tuple[str, ...]  # user_api_scopes this resource needs


@dataclass
class ResourceMapping:
    mapped: list[Mapped] = field(default_factory=list)
    user_api_scopes: list[str] = field(default_factory=list)
    unknown: list[Declared] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what needs a person

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [m.entry for m in self.mapped if m.entry is not None]


def declared_resources(
    resources: Mapping[str, Any] | None, auth_policy: Mapping[str, Any] | None
) -> tuple[list[Declared], list[str]]:
    """Every declared resource (deduplicated, in file order) and the user's API scopes."""
    found: list[Declared] = []
    seen: set[tuple[str, str]] = set()

    def collect(section: Any, origin: str) -> None:
        if not section:
            return
        if not isinstance(section, Mapping):
            raise ValueError(f"MLmodel {origin} is not a mapping")
        version = str(section.get("api_version", SUPPORTED_API_VERSION))
        if version != SUPPORTED_API_VERSION:
            raise ValueError(
                f"MLmodel {origin} has api_version {version!r}; migrate reads version "
                f"{SUPPORTED_API_VERSION!r}"
            )
        databricks = section.get("databricks") or {}
        if not isinstance(databricks, Mapping):
            raise ValueError(f"MLmodel {origin}.databricks is not a mapping")
        for resource_type, entries in databricks.items():
            for entry in entries or []:
                name = entry.get("name") if isinstance(entry, Mapping) else None
                if not isinstance(name, str) or not name:
                    raise ValueError(f"MLmodel {origin}: a {resource_type} entry has no name")
                key = (str(resource_type), name)
                if key in seen:
                    continue
                seen.add(key)
                obo = bool(entry.get("on_behalf_of_user", False))
                found.append(Declared(str(resource_type), name, obo, origin))

    collect(resources, "resources")
    policy = auth_policy or {}
    collect((policy.get("system_auth_policy") or {}).get("resources"), "auth_policy")
    scopes = [str(s) for s in (policy.get("user_auth_policy") or {}).get("api_scopes") or []]
    return found, scopes


def map_resources(
    resources: Mapping[str, Any] | None,
    auth_policy: Mapping[str, Any] | None,
    *,
    skip_unknown: bool = False,
) -> ResourceMapping:
    """The app resources and user scopes for the MLmodel's `resources` and `auth_policy`.

    Raises UnknownResourceType for a type without a rule, unless `skip_unknown`, which lists it
    in the notes instead; ValueError for a malformed section.
    """
    declared, policy_scopes = declared_resources(resources, auth_policy)
    mapping = ResourceMapping()
    unknown = [d for d in declared if d.type not in RULES]
    if unknown and not skip_unknown:
        names = ", ".join(f"{d.type} {d.name!r}" for d in unknown)
        raise UnknownResourceType(
            f"The model declares resources of a type migrate cannot map: {names}. Known types: "
            f"{', '.join(sorted(RULES))}. Pass --skip-unknown-resources to migrate without "
            "them (MIGRATION.md then lists them for you to grant by hand)."
        )
    used_names = set(RESERVED_NAMES)
    scopes: set[str] = set()
    for item in declared:
        rule = RULES.get(item.type)
        if rule is None:
            mapping.unknown.append(item)
            mapping.notes.append(
                f"Grant the app access to {item.type} `{item.name}` by hand: migrate has no "
                "app resource for this type."
            )
            continue
        if item.on_behalf_of_user and rule.user_scopes:
            scopes.update(rule.user_scopes)
            mapping.mapped.append(Mapped(item, None, rule.user_scopes))
            continue
        if item.on_behalf_of_user:
            mapping.notes.append(
                f"{item.type} `{item.name}` was used on behalf of the user, which Apps has no "
                "user scope for: the app's service principal gets access instead."
            )
        name = unique_name(f"{rule.label}-{item.name}", used_names)
        entry = {
            "name": name,
            "description": f"{item.type} {item.name} (from the model's {item.origin})",
            rule.app_kind: {**rule.spec(item.name), "permission": rule.permission},
        }
        mapping.mapped.append(Mapped(item, entry, ()))
        if item.type == "lakebase":
            mapping.notes.append(
                f"Lakebase `{item.name}` is mapped to a provisioned database instance (database "
                f"{LAKEBASE_DATABASE}); for an autoscaling Lakebase project use a `postgres` "
                "app resource (branch, database) instead."
            )
        if item.type == "genie_space":
            mapping.notes.append(
                f"Genie space `{item.name}`: the app resource's `name` is the space id; "
                "put the space's title there if you prefer."
            )
    for scope in policy_scopes:
        translated = USER_SCOPE_ALIASES.get(scope, scope)
        scopes.add(translated)
        if translated not in KNOWN_USER_SCOPES:
            mapping.notes.append(
                f"User API scope `{scope}` from the model's auth_policy was copied as-is: check "
                "that Databricks Apps accepts it (databricks.yml, user_api_scopes)."
            )
    if any(m.entry is None for m in mapping.mapped) or policy_scopes:
        mapping.notes.append(
            "The agent acts on behalf of the calling user for some resources. Model Serving "
            "gave it the caller's credentials (ModelServingUserCredentials); on Apps, build that "
            "client from the request's x-forwarded-access-token header "
            "(mlflow.genai.agent_server.get_request_headers()), and enable user authorization "
            "for the app."
        )
    mapping.user_api_scopes = sorted(scopes)
    return mapping


def unique_name(wanted: str, used: set[str]) -> str:
    """An app resource name from `wanted`: lower case, [a-z0-9-], at most 30 characters, not
    in `used` (which it is added to). Long names end with a digest, so they stay distinct."""
    slug = re.sub(r"[^a-z0-9]+", "-", wanted.lower()).strip("-") or "resource"
    if len(slug) > MAX_RESOURCE_NAME:
        digest = hashlib.sha1(wanted.encode()).hexdigest()[:8]
        slug = f"{slug[: MAX_RESOURCE_NAME - 9].rstrip('-')}-{digest}"
    name, counter = slug, 2
    while name in used:
        suffix = f"-{counter}"
        name = f"{slug[: MAX_RESOURCE_NAME - len(suffix)]}{suffix}"
        counter += 1
    used.add(name)
    return name
