"""`uv run migrate`'s resource mapping against the databricks.bundles classes and the bundle schema.

The mapping lives in the generated project (template/{{.app_name}}/agent_cli/migration/
resources.py, plain Python on purpose); here every rule's app resource is loaded strictly into
`databricks.bundles.apps.AppResource` and a bundle holding all of them is validated against the
bundle JSON Schema ($BUNDLE_SCHEMA). The generated project's own tests check the databricks.yml
of real migrations against the schema too.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import bundle_validation as bv
from conftest import REPO_ROOT
from databricks.bundles.apps import App, AppResource

RESOURCES_MODULE = (
    REPO_ROOT / "template" / "{{.app_name}}" / "agent_cli" / "migration" / "resources.py"
)


def load_resources() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_resources", RESOURCES_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def every_type(resources: ModuleType, **extra: Any) -> dict[str, Any]:
    return {
        "api_version": "1",
        "databricks": {
            kind: [{"name": f"main.agents.{kind}", **extra}] for kind in resources.RULES
        },
    }


def test_every_mlmodel_resource_type_becomes_a_strict_app_resource() -> None:
    resources = load_resources()
    mapping = resources.map_resources(every_type(resources), None)
    assert len(mapping.entries) == len(resources.RULES)
    for entry in mapping.entries:
        assert list(bv.strict_errors(AppResource, entry, entry["name"])) == []
        loaded = AppResource.from_dict(entry)
        assert loaded.name == entry["name"]


def test_a_bundle_with_every_mapped_resource_validates_against_the_schema() -> None:
    resources = load_resources()
    mapping = resources.map_resources(
        every_type(resources),
        {"user_auth_policy": {"api_scopes": ["sql", "dashboards.genie"]}},
    )
    obo = resources.map_resources(every_type(resources, on_behalf_of_user=True), None)
    app = {
        "name": "migrated-agent",
        "source_code_path": "./",
        "resources": mapping.entries,
        "user_api_scopes": sorted(set(mapping.user_api_scopes) | set(obo.user_api_scopes)),
    }
    assert list(bv.strict_errors(App, app, "resources.apps.migrated_agent")) == []
    document = {
        "bundle": {"name": "migrated-agent"},
        "resources": {"apps": {"migrated_agent": app}},
    }
    bv.require_bundle_schema()
    assert bv.schema_errors(document) == []
