"""`uv run migrate`: move a Model Serving ResponsesAgent into this app.

Exit status: 0 migrated (or planned, with --dry-run); 2 bad input, with nothing changed; 1 the
project was migrated but installing the dependencies or the verification failed.

`uv run migrate --finish`, once the migrated agent works, removes the migration machinery
(finish.py); it refuses, changing nothing, while the agent is not migrated or fails verification.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from dotenv import load_dotenv

from agent_cli.migration import source as sources
from agent_cli.migration.dependencies import sync_environment
from agent_cli.migration.errors import MigrationError, StepFailed
from agent_cli.migration.finish import finish
from agent_cli.migration.planner import Options, apply, build_plan, describe
from agent_cli.migration.project import (
    ORIGINAL_MODEL_DIR,
    PYPROJECT_FILE,
    REPORT_FILE,
    Project,
    write_atomically,
)
from agent_cli.migration.report import render_report, summary
from agent_cli.migration.verify import Verification, verify

DEFAULT_PROJECT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="migrate",
        description=(
            "Move an MLflow ResponsesAgent from Model Serving into this app: copy its code and "
            "artifacts, generate agent_server/agent.py, map its resources into databricks.yml, "
            "merge its requirements, verify it on its input example and write MIGRATION.md. "
            "Without a source, re-runs from original_mlflow_model/."
        ),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--endpoint", metavar="NAME", help="a serving endpoint to migrate")
    where.add_argument("--model-uri", metavar="URI", help="an MLflow model URI (models:/n/v, ...)")
    where.add_argument("--model-dir", metavar="DIR", type=Path, help="a downloaded MLflow model")
    parser.add_argument("--profile", help="Databricks CLI profile for --endpoint and downloads")
    parser.add_argument(
        "--served-entity", metavar="NAME", help="with --endpoint: the served entity to migrate"
    )
    parser.add_argument(
        "--async",
        dest="is_async",
        choices=["yes", "no"],
        help="async or sync handlers (default: the project's choice, from agent_server/agent.py)",
    )
    parser.add_argument(
        "--rewrite",
        action="store_true",
        help="rewrite the agent class into module-level functions, where that is safe "
        "(default: an adapter around the original agent)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument(
        "--finish",
        action="store_true",
        help="after a successful migration: verify the agent once more, then remove the "
        "migration command, its tests, dependencies, original model and report",
    )
    parser.add_argument(
        "--on-conflict",
        choices=["stop", "project", "model"],
        default="stop",
        help="when the model's requirements conflict with the project's: stop (default) and "
        "report them, or keep the project's or the model's pins",
    )
    parser.add_argument(
        "--skip-unknown-resources",
        action="store_true",
        help="migrate even if the model declares resource types migrate cannot map",
    )
    deps = parser.add_mutually_exclusive_group()
    deps.add_argument(
        "--frozen",
        action="store_true",
        help="only edit pyproject.toml (uv add --frozen): no resolution, no install",
    )
    deps.add_argument(
        "--no-sync",
        action="store_true",
        help="update pyproject.toml and uv.lock, do not install (uv add --no-sync)",
    )
    parser.add_argument(
        "--skip-verify", action="store_true", help="do not run the input example afterwards"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an agent.py that you changed yourself (with --finish: skip the verification)",
    )
    parser.add_argument(
        "--project-dir", type=Path, default=DEFAULT_PROJECT, help="the project to migrate into"
    )
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        is_async=None if args.is_async is None else args.is_async == "yes",
        rewrite=args.rewrite,
        on_conflict=args.on_conflict,
        skip_unknown_resources=args.skip_unknown_resources,
        dependency_mode="frozen" if args.frozen else "lock" if args.no_sync else "sync",
        force=args.force,
        dry_run=args.dry_run,
    )


def resolve_source(args: argparse.Namespace, project: Project, scratch: Path) -> sources.Source:
    if args.served_entity and not args.endpoint:
        raise MigrationError("--served-entity goes with --endpoint.")
    if args.endpoint:
        source, _ = sources.from_endpoint(args.endpoint, args.profile, args.served_entity, scratch)
        return source
    if args.model_uri:
        return sources.from_model_uri(args.model_uri, args.profile, scratch)
    if args.model_dir:
        return sources.from_model_dir(args.model_dir, project.root)
    previous = project.path(ORIGINAL_MODEL_DIR)
    if previous.is_dir():
        return sources.from_model_dir(previous, project.root)
    raise MigrationError(
        "Say which model to migrate: --endpoint NAME, --model-uri URI or --model-dir DIR."
    )


def run(args: argparse.Namespace) -> int:
    if args.finish:
        return finish(
            args.project_dir.resolve(),
            force=args.force,
            dry_run=args.dry_run,
            dependency_mode=options_from(args).dependency_mode,
        )
    project = Project.at(args.project_dir)
    # The settings the app runs with locally (.env: profile, tracking), so that the endpoint
    # lookup and the verification's original model see the workspace the server will see.
    # Real environment variables win; AGENT_ENV_FILE points elsewhere, as for start-server.
    load_dotenv(os.environ.get("AGENT_ENV_FILE") or project.path(".env"))
    with tempfile.TemporaryDirectory(prefix="migrate-") as scratch:
        source = resolve_source(args, project, Path(scratch))
        options = options_from(args)
        plan = build_plan(project, source, options)
        if options.dry_run:
            print(describe(plan))
            print("\nDry run: nothing was changed.")
            return 0
        changed = apply(plan)

    if options.dependency_mode == "sync" and PYPROJECT_FILE in changed:
        try:
            sync_environment(project.root)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise StepFailed(
                f"The project was migrated, but `uv sync` failed: {getattr(exc, 'stderr', exc)}"
            ) from exc

    if args.skip_verify:
        verification = Verification("skipped", ["--skip-verify"])
    else:
        print("Verifying: the input example through the original model and the migrated app...")
        verification = verify(
            project.root,
            project.path(ORIGINAL_MODEL_DIR),
            plan.model.input_example,
            pickled=not plan.model.from_code,
        )
    report = render_report(plan, verification).encode("utf-8")
    if project.read_bytes(REPORT_FILE) != report:
        write_atomically(project.path(REPORT_FILE), report)
        changed.append(REPORT_FILE)
    print(summary(plan, changed, verification))
    if verification.status == "failed":
        print("\nVerification failed:\n  " + "\n  ".join(verification.details), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except MigrationError as exc:
        print(f"migrate: {exc}\nNothing was changed.", file=sys.stderr)
        return 2
    except StepFailed as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
