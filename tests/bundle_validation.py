"""Checks for a generated `databricks.yml`.

1. `load_bundle()` reads the resources into the `databricks.bundles` classes (`App` for
   `resources.apps.*`, `MlflowExperiment` for `resources.experiments.*`), strictly: an unknown
   field, a missing required field, a wrong container type or an unknown enum value is an
   error naming its path. A target's overrides (`targets.<t>.resources`) are merged in first.
2. `schema_errors()` validates the whole document against the bundle JSON Schema: the file named
   by the BUNDLE_SCHEMA environment variable, else what `databricks bundle schema` prints when a
   Databricks CLI is on PATH. With neither, `require_bundle_schema()` skips the check saying why,
   and fails it under CI=true (CI must never skip it).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import tempfile
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Union

import jsonschema
import jsonschema.validators
import pytest
import regex
import yaml
from databricks.bundles.apps import App
from databricks.bundles.core import Variable
from databricks.bundles.experiments import MlflowExperiment

BUNDLE_SCHEMA_ENV = "BUNDLE_SCHEMA"
BUNDLE_SCHEMA_HINT = (
    f"set {BUNDLE_SCHEMA_ENV} to a file holding the output of `databricks bundle schema` "
    f"(e.g. {BUNDLE_SCHEMA_ENV}=../shared/reference/bundle-schema.json, relative to the repo "
    "root), or put the Databricks CLI on PATH"
)

# The resource types a generated bundle may declare, by their key under `resources:`.
RESOURCE_CLASSES: dict[str, type] = {
    "apps": App,
    "experiments": MlflowExperiment,
}

# A whole-string bundle interpolation such as `${var.serving_endpoint}` or
# `${resources.experiments.x.id}`.
_INTERPOLATION = regex.compile(r"\$\{[\p{L}_][\p{L}\p{N}_\-.\[\]]*\}")
_BOOL_STRINGS = {"true", "false", "True", "False", "TRUE", "FALSE"}


class StrictYamlError(ValueError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise StrictYamlError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,  # type: ignore[arg-type]
)

# PyYAML types plain scalars by YAML 1.1 (`yes`, `no`, `on` and `off` are booleans too); the
# Databricks CLI reads YAML 1.2, whose core schema also makes numbers of `1e3`, `0o17` and
# `.5`-style scalars that YAML 1.1 leaves as strings. The loader applies both, so a plain
# scalar that either reader would not take as a string does not load as one here.
_YAML12_NUMBER_TAG = "tag:agent-app-template.tests,2026:yaml12-number"
_YAML12_NUMBER = regex.compile(
    r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def _construct_yaml12_number(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> int | float:
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    try:
        return int(text, 10)
    except ValueError:
        return float(text)


_UniqueKeyLoader.add_implicit_resolver(
    _YAML12_NUMBER_TAG,
    _YAML12_NUMBER,  # type: ignore[arg-type]
    list("-+0123456789."),
)
_UniqueKeyLoader.add_constructor(
    _YAML12_NUMBER_TAG,
    _construct_yaml12_number,  # type: ignore[arg-type]
)


def parse_yaml(text: str) -> Any:
    """Parse YAML like yaml.safe_load, but fail on duplicate keys and read a plain scalar as
    a non-string if YAML 1.1 or YAML 1.2 (core schema) would."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506


def load_yaml(path: Path) -> Any:
    return parse_yaml(path.read_text(encoding="utf-8"))


def is_interpolation(value: object) -> bool:
    """True if `value` is exactly one bundle interpolation, e.g. `${bundle.git.commit}`."""
    return isinstance(value, str) and _INTERPOLATION.fullmatch(value) is not None


# --- strict loading into the databricks.bundles classes ------------------------------------


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_variable_type(tp: Any) -> bool:
    return tp is Variable or typing.get_origin(tp) is Variable


def _required_fields(cls: type) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def strict_errors(tp: Any, value: Any, path: str) -> Iterator[str]:
    """Every way `value` does not fit the `databricks.bundles` type `tp`, as `path: problem`.

    `from_dict()` already rejects unknown fields and enum values, but without a path, and it
    coerces silently where a mapping or a list meets a string field; this walk is stricter and
    says where.
    """
    if tp is Any:
        return
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None:
            if type(None) not in args:
                yield f"{path}: null is not allowed"
            return
        if is_interpolation(value) and any(_is_variable_type(a) for a in args):
            return
        concrete = [a for a in args if not _is_variable_type(a) and a is not type(None)]
        if len(concrete) != 1:
            yield f"{path}: cannot check union type {tp}"
            return
        yield from strict_errors(concrete[0], value, path)
        return
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            yield f"{path}: expected a list, got {type(value).__name__} {value!r}"
            return
        (item_type,) = typing.get_args(tp)
        for index, item in enumerate(value):
            yield from strict_errors(item_type, item, f"{path}[{index}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            yield f"{path}: expected a mapping, got {type(value).__name__} {value!r}"
            return
        _, value_type = typing.get_args(tp)
        for key, item in value.items():
            yield from strict_errors(value_type, item, f"{path}.{key}")
        return
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            yield f"{path}: expected a mapping for {tp.__name__}, got {value!r}"
            return
        hints = _type_hints(tp)
        for key in value:
            if key not in hints:
                yield (
                    f"{path}.{key}: unknown field for {tp.__name__} "
                    f"(known: {', '.join(sorted(hints))})"
                )
        for key in sorted(_required_fields(tp) - set(value)):
            yield f"{path}.{key}: required field of {tp.__name__} is missing"
        for key, item in value.items():
            if key in hints:
                yield from strict_errors(hints[key], item, f"{path}.{key}")
        return
    if isinstance(tp, type) and issubclass(tp, Enum):
        allowed = [member.value for member in tp]
        if value not in allowed:
            yield f"{path}: {value!r} is not a {tp.__name__} (one of {allowed})"
        return
    if tp is bool:
        if not isinstance(value, bool) and value not in _BOOL_STRINGS:
            yield f"{path}: expected a boolean, got {value!r}"
        return
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            yield f"{path}: expected an integer, got {value!r}"
        return
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield f"{path}: expected a number, got {value!r}"
        return
    if tp is str:
        # YAML scalars that the CLI normalizes to strings (numbers, booleans) are fine;
        # mappings, lists and nulls are not.
        if not isinstance(value, str | int | float | bool):
            yield f"{path}: expected a string, got {type(value).__name__} {value!r}"
        return
    yield f"{path}: cannot check type {tp}"


def merge_override(base: Any, override: Any) -> Any:
    """Merge a target override into the top-level value as the CLI does: mappings merge key
    by key, sequences are concatenated, and any other value replaces the base."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge_override(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return [*base, *override]
    return override


@dataclass(frozen=True)
class LoadedBundle:
    target: str | None
    resources: dict[str, dict[str, Any]]
    """`resources` with the target's overrides merged in, as plain YAML data."""
    apps: dict[str, App]
    experiments: dict[str, MlflowExperiment]


def resources_for_target(document: Mapping[str, Any], target: str | None) -> dict[str, Any]:
    resources = copy.deepcopy(document.get("resources") or {})
    if target is None:
        return resources
    targets = document.get("targets") or {}
    if target not in targets:
        raise KeyError(f"databricks.yml has no target {target!r} (targets: {sorted(targets)})")
    override = (targets[target] or {}).get("resources") or {}
    return merge_override(resources, copy.deepcopy(override))


def load_bundle(document: Mapping[str, Any], target: str | None = None) -> LoadedBundle:
    """Load `resources` (with `target`'s overrides) into the databricks.bundles classes.

    Raises ValueError listing every strictness problem found.
    """
    resources = resources_for_target(document, target)
    where = f"target {target}" if target else "top level"
    problems: list[str] = []
    for kind in resources:
        if kind not in RESOURCE_CLASSES:
            problems.append(
                f"resources.{kind}: resource type not modelled by tests/bundle_validation.py "
                f"(add it to RESOURCE_CLASSES)"
            )
    loaded: dict[str, dict[str, Any]] = {kind: {} for kind in RESOURCE_CLASSES}
    for kind, cls in RESOURCE_CLASSES.items():
        entries = resources.get(kind) or {}
        if not isinstance(entries, dict):
            problems.append(f"resources.{kind}: expected a mapping, got {entries!r}")
            continue
        for key, value in entries.items():
            path = f"resources.{kind}.{key}"
            errors = list(strict_errors(cls, value, path))
            if errors:
                problems.extend(errors)
                continue
            try:
                loaded[kind][key] = cls.from_dict(copy.deepcopy(value))  # type: ignore[attr-defined]
            except (ValueError, TypeError) as exc:
                problems.append(f"{path}: {cls.__name__}.from_dict failed: {exc}")
    if problems:
        raise ValueError(
            f"databricks.yml ({where}) does not load strictly:\n" + "\n".join(problems)
        )
    return LoadedBundle(target, resources, loaded["apps"], loaded["experiments"])


def target_names(document: Mapping[str, Any]) -> list[str]:
    return sorted((document.get("targets") or {}).keys())


def load_bundle_all_targets(document: Mapping[str, Any]) -> dict[str | None, LoadedBundle]:
    """The top-level resources (key None) and each target's merged view."""
    result: dict[str | None, LoadedBundle] = {None: load_bundle(document)}
    for target in target_names(document):
        result[target] = load_bundle(document, target)
    return result


# --- JSON Schema validation ----------------------------------------------------------------


def _regex_pattern(
    validator: jsonschema.protocols.Validator, pattern: str, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    """The `pattern` keyword with the `regex` package, which knows `\\p{L}` and `\\p{N}`."""
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


def bundle_schema_path() -> Path | None:
    """The bundle JSON Schema: $BUNDLE_SCHEMA, else `databricks bundle schema`; else None."""
    value = os.environ.get(BUNDLE_SCHEMA_ENV)
    if value:
        return Path(value)
    return _schema_from_cli(shutil.which("databricks"))


@functools.cache
def _schema_from_cli(cli: str | None) -> Path | None:
    """`databricks bundle schema` saved to a file, once per process and CLI."""
    if cli is None:
        return None
    result = subprocess.run(
        [cli, "bundle", "schema"], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"`{cli} bundle schema` failed: {result.stderr.strip()[:500]}")
    folder = Path(tempfile.mkdtemp(prefix="bundle-schema-"))
    path = folder / "bundle-schema.json"
    path.write_text(result.stdout, encoding="utf-8")
    return path


def require_bundle_schema() -> Path:
    """The bundle JSON Schema, or a skip that says how to get it (a failure under CI=true)."""
    path = bundle_schema_path()
    if path is not None:
        return path
    reason = f"no bundle JSON Schema for this check: {BUNDLE_SCHEMA_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the check must run)")
    pytest.skip(reason)


@functools.cache
def _validator_for(path: str) -> jsonschema.protocols.Validator:
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls = jsonschema.validators.extend(base, validators={"pattern": _regex_pattern})
    return cls(schema)


def bundle_schema_validator() -> jsonschema.protocols.Validator:
    """The compiled validator for the bundle JSON Schema (cached per process).

    Raises RuntimeError with setup instructions when there is none, or BUNDLE_SCHEMA is missing.
    """
    path = bundle_schema_path()
    if path is None:
        raise RuntimeError(f"no bundle JSON Schema: {BUNDLE_SCHEMA_HINT}")
    if not path.is_file():
        raise RuntimeError(
            f"{BUNDLE_SCHEMA_ENV}={path} is not a file (cwd {Path.cwd()}): {BUNDLE_SCHEMA_HINT}"
        )
    return _validator_for(str(path.resolve()))


def _leaf_errors(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    """The specific failures under a oneOf/anyOf error.

    The bundle schema wraps almost every value in `oneOf: [<the real schema>, <a ${...}
    interpolation string>]`, so a deep mistake surfaces as a chain of oneOf errors. Follow the
    alternatives whose type fits the value and report what failed inside the first of them.
    """
    if not error.context:
        yield error
        return
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    own_path = list(error.absolute_path)

    def wrong_type(errors: list[jsonschema.ValidationError]) -> bool:
        return any(e.validator == "type" and list(e.absolute_path) == own_path for e in errors)

    fitting = [errors for errors in branches.values() if not wrong_type(errors)]
    for sub in (fitting or list(branches.values()))[0]:
        yield from _leaf_errors(sub)


def schema_errors(document: Any) -> list[str]:
    """Every violation of the bundle JSON Schema, as `path: message`."""
    validator = bundle_schema_validator()
    messages = []
    # The schema allows any extra top-level key (`additionalProperties: {}`); the CLI warns
    # about unknown ones, so treat them as errors.
    known = validator.schema.get("properties", {})
    if isinstance(document, dict):
        messages.extend(f"{key}: unknown top-level key" for key in document if key not in known)
    for error in validator.iter_errors(document):
        for leaf in _leaf_errors(error):
            location = ".".join(str(part) for part in leaf.absolute_path) or "<root>"
            messages.append(f"{location}: {leaf.message}")
    return messages


# --- deploy-time checks under a given identity ---------------------------------------------
#
# `bundle validate`/`deploy` resolve `${workspace.current_user.*}` from SCIM `Me` and then apply
# the bundle's permissions. What a real workspace does with the result depends on who deploys:
# a person, or the service principal of the generated CI (GitHub OIDC). These checks model the
# databricks/cli code that decides it:
#   bundle/config/mutator/populate_current_user.go  current_user = Me + short_name,
#                                                   domain_friendly_name
#   libs/iamutil/user.go, service_principal.go      a userName that parses as a UUID is a
#                                                   service principal's application id; its
#                                                   short_name comes from its displayName
#   bundle/config/mutator/resourcemutator/validate_target_mode.go
#                                                   mode: production needs an explicit
#                                                   workspace.root_path in the target
#   bundle/config/mutator/resourcemutator/apply_bundle_permissions.go
#                                                   top-level/target permissions land on every
#                                                   resource (experiments too)
#   bundle/config/mutator/resourcemutator/fix_permissions.go
#                                                   the deployer is added to every resource's
#                                                   permissions, as service_principal_name when
#                                                   its userName is a UUID
#   bundle/apps/validate.go                         an app resource on a bundle resource that has
#                                                   permissions loses its grant on the next
#                                                   deploy unless the app's service principal
#                                                   is in them (databricks/cli issue 4309):
#     ${resources.apps.<key>.service_principal_client_id}
# A permission `user_name` must name a user: the Permissions API answers "Principal:
# UserName(<uuid>) does not exist" for an application id there.

_UUID = regex.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_REFERENCE = regex.compile(r"\$\{([\p{L}_][\p{L}\p{N}_\-.\[\]]*)\}")
_RESOURCE_REFERENCE = regex.compile(r"^\$\{resources\.(\w+)\.([^.]+)\.(\w+)\}$")
_APP_SP_REFERENCE = regex.compile(r"^\$\{resources\.apps\.([^.]+)\.service_principal_client_id\}$")
# Fields of a deployed app the bundle can reference (resources.apps.<key>.<field>).
_APP_OUTPUT_FIELDS = {"id", "name", "url", "service_principal_client_id", "service_principal_id"}


def is_application_id(name: str) -> bool:
    return _UUID.fullmatch(name) is not None


def _normalize(text: str) -> str:
    # libs/textutil NormalizeString: letters and digits are kept, anything else becomes "_".
    return regex.sub(r"[^\p{L}\p{N}]", "_", text)


@dataclass(frozen=True)
class Identity:
    """The deployer as the CLI sees it: SCIM `Me`'s userName and displayName."""

    user_name: str
    display_name: str = ""

    @classmethod
    def from_me(cls, me: Mapping[str, Any]) -> Identity:
        return cls(str(me["userName"]), str(me.get("displayName") or ""))

    @property
    def is_service_principal(self) -> bool:
        return is_application_id(self.user_name)

    @property
    def short_name(self) -> str:
        name = self.user_name
        if self.is_service_principal and self.display_name:
            name = self.display_name
        return _normalize(name.split("@", 1)[0])

    def current_user(self) -> dict[str, str]:
        """`${workspace.current_user.<field>}` values (iam.User's JSON names plus the CLI's own)."""
        fields = {
            "userName": self.user_name,
            "short_name": self.short_name,
            "domain_friendly_name": regex.sub(r"[^a-z0-9]", "-", self.short_name.lower()),
        }
        if self.display_name:
            fields["displayName"] = self.display_name
        return fields


def _resolve_string(
    text: str,
    values: Mapping[str, str],
    path: str,
    problems: list[str],
    keep: Callable[[str], bool],
) -> str:
    def replace(match: regex.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        if not keep(key):
            problems.append(f"{path}: reference does not exist: ${{{key}}}")
        return match.group(0)

    return _REFERENCE.sub(replace, text)


def _resolve(
    value: Any,
    values: Mapping[str, str],
    path: str,
    problems: list[str],
    keep: Callable[[str], bool],
) -> Any:
    if isinstance(value, str):
        return _resolve_string(value, values, path, problems, keep)
    if isinstance(value, list):
        return [_resolve(v, values, f"{path}[{i}]", problems, keep) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _resolve(v, values, f"{path}.{k}", problems, keep) for k, v in value.items()}
    return value


def _principal_problems(entry: Mapping[str, Any], path: str, app_keys: set[str]) -> Iterator[str]:
    if (user := entry.get("user_name")) is not None and is_application_id(str(user)):
        yield (
            f"{path}: user_name {user!r} is a service principal's application id "
            f"(the Permissions API answers 'Principal: UserName({user}) does not exist'); "
            "it belongs in service_principal_name"
        )
    if (sp := entry.get("service_principal_name")) is not None:
        sp = str(sp)
        if match := _APP_SP_REFERENCE.fullmatch(sp):
            if match.group(1) not in app_keys:
                yield f"{path}: {sp} names no app of this bundle"
        elif not is_application_id(sp):
            yield f"{path}: service_principal_name {sp!r} is not an application id"


def deploy_errors(
    document: Mapping[str, Any], target: str, identity: Identity, *, git: bool = False
) -> list[str]:
    """What `databricks bundle deploy -t <target>` run by `identity` would reject or get wrong.

    `git`: whether the project is a git checkout (a fresh `bundle init` is not). Without one
    bundle/config/mutator/load_git_details.go only warns and leaves bundle.git.commit "", which
    libs/dyn/convert/from_typed.go leaves out of the configuration (a zero value with no
    reference), so `${bundle.git.commit}` fails with "reference does not exist"."""
    problems: list[str] = []
    targets = document.get("targets") or {}
    if target not in targets:
        return [f"no target {target!r}"]
    target_doc = targets[target] or {}
    bundle_name = str((document.get("bundle") or {}).get("name", ""))
    values = {
        "bundle.name": bundle_name,
        "bundle.target": target,
        **{f"workspace.current_user.{k}": v for k, v in identity.current_user().items()},
    }
    if git:
        values.update({"bundle.git.commit": "0" * 40, "bundle.git.branch": "main"})
    variables = {**(document.get("variables") or {})}
    for name, override in (target_doc.get("variables") or {}).items():
        variables[name] = {**(variables.get(name) or {}), "default": override}
    for name, spec in variables.items():
        if isinstance(spec, dict) and "default" in spec:
            values[f"var.{name}"] = str(spec["default"])
        else:
            problems.append(f"variables.{name}: no default, so deploy needs --var {name}=...")

    resources = resources_for_target(document, target)
    app_keys = set((resources.get("apps") or {}).keys())

    def keep(key: str) -> bool:
        # Resource outputs are resolved during the deploy itself.
        match = regex.fullmatch(r"resources\.(\w+)\.([^.]+)\.(\w+)", key)
        if match is None:
            return False
        kind, name, field = match.groups()
        if name not in (resources.get(kind) or {}):
            return False
        return field == "id" or (kind == "apps" and field in _APP_OUTPUT_FIELDS)

    resolved = _resolve(resources, values, "resources", problems, keep)
    workspace = _resolve(target_doc.get("workspace") or {}, values, "workspace", problems, keep)
    top_permissions = _resolve(
        [*(document.get("permissions") or []), *(target_doc.get("permissions") or [])],
        values,
        "permissions",
        problems,
        keep,
    )

    if target_doc.get("mode") == "production":
        root = workspace.get("root_path")
        if not root:
            problems.append(
                f"targets.{target}: mode: production must set workspace.root_path "
                "(validate_target_mode.go)"
            )
        elif not str(root).startswith(f"/Workspace/Users/{identity.user_name}/"):
            problems.append(
                f"targets.{target}.workspace.root_path {root!r} is outside the deployer's home "
                f"folder /Workspace/Users/{identity.user_name}/"
            )

    for index, entry in enumerate(top_permissions):
        problems.extend(_principal_problems(entry, f"permissions[{index}]", app_keys))

    # apply_bundle_permissions.go: the bundle's permissions on every resource that has them;
    # fix_permissions.go: then the deployer on every permissions list.
    deployer_kind = "service_principal_name" if identity.is_service_principal else "user_name"
    for kind, entries in resolved.items():
        for key, resource in (entries or {}).items():
            own = list(resource.get("permissions") or [])
            for index, entry in enumerate(own):
                path = f"resources.{kind}.{key}.permissions[{index}]"
                problems.extend(_principal_problems(entry, path, app_keys))
            if kind in ("apps", "experiments", "jobs", "model_serving_endpoints"):
                own += [{**p} for p in top_permissions]
            if own:
                own.append({deployer_kind: identity.user_name, "level": "CAN_MANAGE"})
            resource["permissions"] = own

    problems.extend(_reference_cycles(resolved))

    # bundle/apps/validate.go (databricks/cli issue 4309).
    for app_key, app in (resolved.get("apps") or {}).items():
        sp_reference = f"${{resources.apps.{app_key}.service_principal_client_id}}"
        for app_resource in app.get("resources") or []:
            for spec in app_resource.values():
                if not isinstance(spec, dict):
                    continue
                for field_value in spec.values():
                    match = _RESOURCE_REFERENCE.fullmatch(str(field_value))
                    if match is None:
                        continue
                    kind, name = match.group(1), match.group(2)
                    permissions = ((resolved.get(kind) or {}).get(name) or {}).get("permissions")
                    if permissions and not any(
                        p.get("service_principal_name") == sp_reference for p in permissions
                    ):
                        problems.append(
                            f"resources.apps.{app_key}: app resource "
                            f"{app_resource.get('name')!r} uses resources.{kind}.{name}, whose "
                            "permissions do not include the app's service principal "
                            f"({sp_reference}): the next deploy drops its grant"
                        )
    return problems


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        for match in _REFERENCE.finditer(value):
            yield match.group(1)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


def _reference_cycles(resources: Mapping[str, Any]) -> Iterator[str]:
    """Cycles among the deploy's nodes. A resource's `permissions` are a node of their own
    (`resources.<kind>.<key>.permissions` in databricks/cli bundle/direct; a separate
    databricks_permissions resource in Terraform), so they may reference an app that
    references the resource itself (acceptance/bundle/apps/job_permissions, fix.patch)."""
    edges: dict[str, set[str]] = {}
    for kind, entries in resources.items():
        for key, resource in (entries or {}).items():
            node = f"resources.{kind}.{key}"
            body = {k: v for k, v in resource.items() if k != "permissions"}
            for source, value in (
                (node, body),
                (f"{node}.permissions", resource.get("permissions")),
            ):
                for ref in _references(value):
                    match = regex.fullmatch(r"(resources\.\w+\.[^.]+)\.\w+", ref)
                    if match:
                        edges.setdefault(source, set()).add(match.group(1))
            edges.setdefault(f"{node}.permissions", set()).add(node)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> Iterator[str]:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                yield "dependency cycle: " + " -> ".join([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                yield from visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            yield from visit(start, [start])
