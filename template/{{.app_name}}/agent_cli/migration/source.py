"""Where the model comes from: a serving endpoint, an MLflow model URI, or a directory.

Downloads go to a scratch directory first; the planner copies the model into the project only
once everything checked out. The registry is whatever MLflow is configured for
(MLFLOW_REGISTRY_URI, else MLflow's default for the tracking URI); with --profile and no
MLFLOW_REGISTRY_URI, Unity Catalog names (catalog.schema.model) use that profile's Unity Catalog
registry and other names its workspace registry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_cli.migration.errors import MigrationError

# Bounds on the endpoint lookup (the SDK's default retry budget is 300 s).
SDK_RETRY_TIMEOUT_SECONDS = 20
SDK_HTTP_TIMEOUT_SECONDS = 60


@dataclass
class Source:
    kind: str  # "endpoint", "model-uri", "model-dir"
    label: str  # how MIGRATION.md names it
    directory: Path  # the model's files (scratch download, or the given directory)
    model_uri: str | None = None
    endpoint: str | None = None
    choice: str | None = None  # why this served entity, for an endpoint
    environment_vars: dict[str, str] = field(default_factory=dict)  # the served entity's


@dataclass(frozen=True)
class ServedEntity:
    name: str
    entity_name: str | None
    entity_version: str | None
    traffic: int
    kind: str  # "registered model", "foundation model", "external model"
    environment_vars: dict[str, str]


def served_entities(endpoint: dict[str, Any]) -> list[ServedEntity]:
    """The endpoint's served entities with their share of the traffic."""
    config = endpoint.get("config") or endpoint.get("pending_config") or {}
    entities = config.get("served_entities") or config.get("served_models") or []
    routes = (config.get("traffic_config") or {}).get("routes") or []
    traffic: dict[str, int] = {}
    for route in routes:
        name = route.get("served_entity_name") or route.get("served_model_name")
        if name:
            traffic[name] = int(route.get("traffic_percentage") or 0)
    result = []
    for entity in entities:
        name = entity.get("name") or entity.get("entity_name") or entity.get("model_name") or ""
        if entity.get("foundation_model"):
            kind = "foundation model"
        elif entity.get("external_model"):
            kind = "external model"
        else:
            kind = "registered model"
        share = traffic.get(name, 100 if not routes and len(entities) == 1 else 0)
        result.append(
            ServedEntity(
                name=name,
                entity_name=entity.get("entity_name") or entity.get("model_name"),
                entity_version=str(entity.get("entity_version") or entity.get("model_version"))
                if (entity.get("entity_version") or entity.get("model_version"))
                else None,
                traffic=share,
                kind=kind,
                environment_vars=dict(entity.get("environment_vars") or {}),
            )
        )
    return result


def choose_served_entity(
    endpoint_name: str, entities: list[ServedEntity], wanted: str | None = None
) -> tuple[ServedEntity, str]:
    """The served entity to migrate, and why: the one named by --served-entity, else the one
    taking all the traffic, else (traffic split) the one taking the largest share."""
    if not entities:
        raise MigrationError(f"Serving endpoint {endpoint_name!r} serves nothing.")
    split = ", ".join(f"{e.name} {e.traffic}%" for e in entities)
    if wanted is not None:
        chosen = next((e for e in entities if e.name == wanted), None)
        if chosen is None:
            raise MigrationError(
                f"Serving endpoint {endpoint_name!r} has no served entity {wanted!r} "
                f"(it has: {split})."
            )
        why = f"served entity {chosen.name} (chosen with --served-entity; traffic: {split})"
    else:
        ranked = sorted(entities, key=lambda e: -e.traffic)
        chosen = ranked[0]
        if chosen.traffic == 100:
            why = f"served entity {chosen.name}, which takes 100% of the traffic"
        elif len(ranked) > 1 and ranked[1].traffic == chosen.traffic:
            raise MigrationError(
                f"Serving endpoint {endpoint_name!r} splits its traffic evenly ({split}): "
                "pass --served-entity NAME to say which one to migrate."
            )
        else:
            why = (
                f"served entity {chosen.name}, which takes the largest share of the split "
                f"traffic ({split}); pass --served-entity NAME to migrate another one"
            )
    if chosen.kind != "registered model" or not chosen.entity_name or not chosen.entity_version:
        raise MigrationError(
            f"Served entity {chosen.name!r} of endpoint {endpoint_name!r} is a {chosen.kind}, "
            "not a registered agent model: there is no agent code to migrate."
        )
    return chosen, why


def workspace_client(profile: str | None) -> Any:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    try:
        config = Config(
            profile=profile,
            retry_timeout_seconds=SDK_RETRY_TIMEOUT_SECONDS,
            http_timeout_seconds=SDK_HTTP_TIMEOUT_SECONDS,
        )
    except ValueError as exc:
        raise MigrationError(
            f"Databricks authentication is not configured ({exc}). Run `databricks auth login` "
            "and pass --profile, or set DATABRICKS_CONFIG_PROFILE."
        ) from exc
    return WorkspaceClient(config=config)


def lookup_endpoint(name: str, profile: str | None) -> dict[str, Any]:
    from databricks.sdk.errors import NotFound, PermissionDenied, Unauthenticated

    client = workspace_client(profile)
    try:
        return client.serving_endpoints.get(name).as_dict()
    except NotFound as exc:
        raise MigrationError(
            f"Serving endpoint {name!r} does not exist in {client.config.host} (or you cannot "
            f"see it): {exc}"
        ) from exc
    except (PermissionDenied, Unauthenticated) as exc:
        raise MigrationError(
            f"Not allowed to read serving endpoint {name!r} in {client.config.host}: {exc}"
        ) from exc
    except Exception as exc:  # network, timeouts: all end the same way
        raise MigrationError(
            f"Could not look up serving endpoint {name!r} in {client.config.host}: {exc}"
        ) from exc


def registry_uri_for(model_uri: str, profile: str | None) -> str | None:
    """The registry to download `models:/` from when the user did not configure one."""
    if os.environ.get("MLFLOW_REGISTRY_URI") or not profile:
        return None
    if not model_uri.startswith("models:/"):
        return None
    name = model_uri[len("models:/") :].split("/", 1)[0].split("@", 1)[0]
    scheme = "databricks-uc" if name.count(".") == 2 else "databricks"
    return f"{scheme}://{profile}"


def download(model_uri: str, destination: Path, profile: str | None) -> Path:
    """Download `model_uri` with MLflow into `destination`; returns the model directory."""
    import mlflow

    registry = registry_uri_for(model_uri, profile)
    if registry is not None:
        mlflow.set_registry_uri(registry)
    if profile and not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(f"databricks://{profile}")
    destination.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(destination)
        )
    except ImportError as exc:
        raise MigrationError(
            f"Downloading {model_uri} needs a package MLflow did not find ({exc}). For Unity "
            "Catalog models run: uv run --with 'mlflow[databricks]' migrate ..."
        ) from exc
    except Exception as exc:  # MlflowException, HTTP and filesystem errors alike
        raise MigrationError(f"Could not download {model_uri}: {exc}") from exc
    path = Path(local)
    if path.is_file():
        raise MigrationError(f"{model_uri} is a single file, not an MLflow model directory.")
    return path


def from_endpoint(
    name: str, profile: str | None, wanted: str | None, scratch: Path
) -> tuple[Source, ServedEntity]:
    entities = served_entities(lookup_endpoint(name, profile))
    chosen, why = choose_served_entity(name, entities, wanted)
    model_uri = f"models:/{chosen.entity_name}/{chosen.entity_version}"
    directory = download(model_uri, scratch, profile)
    source = Source(
        kind="endpoint",
        label=f"serving endpoint `{name}`: {why}, model `{model_uri}`",
        directory=directory,
        model_uri=model_uri,
        endpoint=name,
        choice=why,
        environment_vars=chosen.environment_vars,
    )
    return source, chosen


def from_model_uri(model_uri: str, profile: str | None, scratch: Path) -> Source:
    return Source(
        kind="model-uri",
        label=f"MLflow model `{model_uri}`",
        directory=download(model_uri, scratch, profile),
        model_uri=model_uri,
    )


def from_model_dir(directory: Path, project_root: Path) -> Source:
    directory = directory.expanduser().resolve()
    try:
        shown = directory.relative_to(project_root).as_posix()
    except ValueError:
        shown = str(directory)
    return Source(kind="model-dir", label=f"MLflow model directory `{shown}`", directory=directory)
