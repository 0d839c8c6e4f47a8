"""Structural edits of databricks.yml: a YAML round trip (ruamel.yaml), never text surgery.

Comments, key order and quoting of everything migrate does not touch come back unchanged. The
app resources migrate adds are recorded (migration.json), so a re-run updates them in place and
removes the ones a new model no longer declares, without touching resources you added yourself.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from agent_cli.migration.errors import MigrationError
from agent_cli.migration.resources import ResourceMapping

# The template's LLM resource: its endpoint is the bundle variable `serving_endpoint`.
LLM_RESOURCE = "serving-endpoint"
LLM_VARIABLE = "serving_endpoint"
# Enum values stay plain scalars; names and ids are quoted so YAML never reads them as
# numbers or booleans.
PLAIN_KEYS = frozenset({"permission", "securable_type"})


@dataclass
class BundleChange:
    text: str
    resources: list[str] = field(default_factory=list)  # the names migrate now manages
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    user_api_scopes: list[str] = field(default_factory=list)  # the scopes migrate manages
    llm_variable: dict[str, str] | None = None  # {"original": ..., "value": ...}

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def _yaml() -> YAML:
    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold long descriptions
    return yaml


def load(text: str) -> Any:
    try:
        return _yaml().load(text)
    except YAMLError as exc:
        raise MigrationError(f"databricks.yml is not valid YAML: {exc}") from exc


def dump(document: Any) -> str:
    out = io.StringIO()
    _yaml().dump(document, out)
    return out.getvalue()


def only_app(document: Any) -> tuple[str, CommentedMap]:
    apps = ((document or {}).get("resources") or {}).get("apps") or {}
    if not isinstance(apps, dict) or len(apps) != 1:
        raise MigrationError(
            f"databricks.yml must define exactly one app under resources.apps, found {len(apps)}."
        )
    key, app = next(iter(apps.items()))
    if not isinstance(app, dict):
        raise MigrationError(f"databricks.yml: resources.apps.{key} is not a mapping.")
    return str(key), app


def update_bundle(
    text: str, mapping: ResourceMapping, previous: dict[str, Any] | None = None
) -> BundleChange:
    """databricks.yml with the model's resources as app resources and user_api_scopes."""
    previous = previous or {}
    document = load(text)
    _, app = only_app(document)
    resources = app.get("resources")
    if resources is None:
        resources = CommentedSeq()
        app["resources"] = resources
    if not isinstance(resources, list):
        raise MigrationError("databricks.yml: the app's resources is not a list.")

    change = BundleChange(text="")
    entries = list(mapping.entries)
    change.llm_variable = _point_llm_variable(document, resources, entries, previous)

    wanted = {entry["name"]: entry for entry in entries}
    previously_managed = set(previous.get("resources") or [])
    by_name = {r.get("name"): index for index, r in enumerate(resources) if isinstance(r, dict)}
    clashes = sorted(n for n in wanted if n in by_name and n not in previously_managed)
    if clashes:
        raise MigrationError(
            f"databricks.yml already has app resources named {', '.join(clashes)} that migrate "
            "did not add: rename them, then run migrate again."
        )
    for name in sorted(previously_managed - set(wanted)):
        if name in by_name:
            change.removed.append(name)
    kept = CommentedSeq(
        r for r in resources if not (isinstance(r, dict) and r.get("name") in change.removed)
    )
    resources[:] = list(kept)
    by_name = {r.get("name"): index for index, r in enumerate(resources) if isinstance(r, dict)}
    for name, entry in wanted.items():
        node = _node(entry)
        if name in by_name:
            if _plain(resources[by_name[name]]) != _plain(node):
                resources[by_name[name]] = node
                change.updated.append(name)
        else:
            resources.append(node)
            change.added.append(name)
    change.resources = list(wanted)

    change.user_api_scopes = _update_scopes(app, mapping.user_api_scopes, previous)
    change.text = dump(document)
    return change


def _point_llm_variable(
    document: Any, resources: list[Any], entries: list[dict[str, Any]], previous: dict[str, Any]
) -> dict[str, str] | None:
    """The template grants the LLM endpoint through `serving-endpoint` and the variable
    `serving_endpoint`: the model's first serving endpoint takes that place (its resource is
    then not added twice). With none, the variable gets back its value from before migrate."""
    variable = ((document.get("variables") or {}).get(LLM_VARIABLE)) or None
    llm = next(
        (
            r
            for r in resources
            if isinstance(r, dict)
            and r.get("name") == LLM_RESOURCE
            and str((r.get("serving_endpoint") or {}).get("name", "")) == f"${{var.{LLM_VARIABLE}}}"
        ),
        None,
    )
    if not isinstance(variable, dict) or llm is None:
        return None
    recorded = previous.get("llm_variable") or {}
    original = str(recorded.get("original", variable.get("default", "")))
    endpoint = next((e for e in entries if "serving_endpoint" in e), None)
    value = original if endpoint is None else endpoint["serving_endpoint"]["name"]
    if endpoint is not None:
        entries.remove(endpoint)
    if str(variable.get("default", "")) != value:
        variable["default"] = DoubleQuotedScalarString(value)
    return {"original": original, "value": value}


def _update_scopes(app: CommentedMap, scopes: list[str], previous: dict[str, Any]) -> list[str]:
    existing = [str(s) for s in app.get("user_api_scopes") or []]
    managed_before = set(previous.get("user_api_scopes") or [])
    yours = [s for s in existing if s not in managed_before]
    wanted = yours + sorted(set(scopes) - set(yours))
    if wanted == existing:
        return sorted(set(scopes))
    if not wanted:
        app.pop("user_api_scopes", None)
    else:
        seq = CommentedSeq(DoubleQuotedScalarString(s) for s in wanted)
        if "user_api_scopes" in app:
            app["user_api_scopes"] = seq
        else:
            keys = list(app.keys())
            position = keys.index("resources") + 1 if "resources" in keys else len(keys)
            app.insert(position, "user_api_scopes", seq)
    return sorted(set(scopes))


def _node(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        node = CommentedMap()
        for k, v in value.items():
            node[k] = _node(v, k)
        return node
    if isinstance(value, list):
        return CommentedSeq(_node(v) for v in value)
    if isinstance(value, str) and key not in PLAIN_KEYS:
        return DoubleQuotedScalarString(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, str) else value
