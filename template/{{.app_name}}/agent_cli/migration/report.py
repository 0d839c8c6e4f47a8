"""MIGRATION.md, and the short summary migrate prints. Both depend only on the plan and the
verification, never on the time or the machine, so a re-run writes the same report."""

from __future__ import annotations

from agent_cli.migration.planner import Plan, resource_line
from agent_cli.migration.project import (
    AGENT_FILE,
    ORIGINAL_MODEL_DIR,
    PACKAGED_MODEL_DIR,
    RECORD_FILE,
)
from agent_cli.migration.verify import Verification

NEXT_COMMANDS = (
    ("uv run quickstart", "authenticate and set up .env and the MLflow experiment"),
    ("uv run start-server", "serve the agent locally on http://127.0.0.1:8000"),
    ("uv run deploy", "deploy the app with its resources"),
)


def render_report(plan: Plan, verification: Verification) -> str:
    model = plan.model
    out = [
        "# Migration from Model Serving",
        "",
        f"Written by `uv run migrate`; a re-run with the same inputs writes the same files. "
        f"`{RECORD_FILE}` holds the same facts for the next run.",
        "",
        "## Source",
        "",
        f"- {plan.source.label}",
        f"- A ResponsesAgent {model.kind}, logged with MLflow {model.mlflow_version} on Python "
        f"{model.python_version}",
        "",
        "## What was copied",
        "",
    ]
    if plan.mode == "adapter":
        out.append(
            f"- The whole MLflow model into `{PACKAGED_MODEL_DIR}/` ({len(model.files())} files): "
            "the app loads it from there, so its code, artifacts and configuration resolve "
            "from the package, whatever the working directory."
        )
        if model.code_dir:
            out.append(
                f"  - code: `{PACKAGED_MODEL_DIR}/{model.code_dir}/` (on `sys.path` when loaded, "
                "as in Model Serving)"
            )
        for name, path in sorted(model.artifacts.items()):
            out.append(f"  - artifact `{name}`: `{PACKAGED_MODEL_DIR}/{path}`")
        if model.model_config:
            out.append("  - its ModelConfig, as logged (in `MLmodel`)")
    out.append(
        f"- The model as downloaded, into `{ORIGINAL_MODEL_DIR}/` (git-ignored; for reference "
        "and re-runs)."
    )
    out += ["", "## Entry point", ""]
    handlers = "async" if plan.is_async else "sync"
    if plan.mode == "adapter":
        out.append(
            f"`{AGENT_FILE}` serves the original agent through an adapter: `@invoke` calls its "
            "`predict()` and `@stream` its `predict_stream()` (for an agent with only "
            "`predict()`, the finished output items), with the request unchanged, "
            "`custom_inputs` and `context` included."
        )
    else:
        out.append(
            f"`{AGENT_FILE}` is the model's code rewritten (`--rewrite`): the agent class became "
            "module-level functions, `__init__` module-level code (it now runs when the module "
            "is imported, at server start), and `@invoke`/`@stream` call "
            "`predict`/`predict_stream`."
        )
    out.append(
        f"The handlers are {handlers} ({plan.async_origin})"
        + (
            "; the original sync code runs on worker threads, never on the event loop."
            if plan.is_async
            else "; the server runs them on worker threads."
        )
    )
    out += ["", "## Resources (databricks.yml)", ""]
    if plan.mapping.mapped:
        out += [f"- {resource_line(plan, mapped)}" for mapped in plan.mapping.mapped]
    else:
        out.append("- The model declares no resources.")
    if plan.bundle.user_api_scopes:
        out.append(f"- `user_api_scopes`: {', '.join(plan.bundle.user_api_scopes)}")
    if plan.bundle.removed:
        out.append(f"- Removed (no longer declared): {', '.join(plan.bundle.removed)}")
    out += ["", "## Dependencies (pyproject.toml)", ""]
    deps = plan.dependencies
    out += [f"- Added `{r}`" for r in deps.added]
    out += [
        f"- Kept the project's `{mine}` (the model's `{theirs}` agrees)"
        for mine, theirs in deps.kept
    ]
    out += [f"- Conflict: {line}" for line in deps.resolved]
    if not (deps.added or deps.kept or deps.resolved):
        out.append("- Nothing to add.")
    out += ["", "## Verification", ""]
    if verification.status == "passed":
        out.append("The input example gave the same answer from the original and the migrated app:")
    elif verification.status == "failed":
        out.append("**Failed**: the migrated app did not answer the input example as the original:")
    else:
        out.append("Not verified:")
    out += [f"- {line}" for line in verification.details]
    out += ["", "## Needs a person", ""]
    out += [f"- {note}" for note in plan.notes] or ["- Nothing."]
    out += ["", "## Next", "", "```bash"]
    out += [f"{command:<22}# {what}" for command, what in NEXT_COMMANDS]
    out += ["```", ""]
    return "\n".join(out)


def summary(plan: Plan, changed: list[str], verification: Verification) -> str:
    lines = [
        f"Migrated {plan.source.label}",
        f"  entry point: {AGENT_FILE} ({plan.mode}, {'async' if plan.is_async else 'sync'})",
        f"  resources: {len(plan.bundle.resources)} app resource(s) managed"
        + (
            f", user_api_scopes {', '.join(plan.bundle.user_api_scopes)}"
            if plan.bundle.user_api_scopes
            else ""
        ),
        f"  dependencies: {len(plan.dependencies.added)} added, {len(plan.dependencies.kept)} kept",
        f"  changed: {', '.join(changed) if changed else 'nothing (already migrated)'}",
        f"  verification: {verification.status}",
    ]
    if plan.notes:
        lines.append(f"  needs a person: {len(plan.notes)} item(s), see MIGRATION.md")
    lines += ["", "Next:"]
    lines += [f"  {command:<22}# {what}" for command, what in NEXT_COMMANDS]
    return "\n".join(lines)
