"""`uv run deploy`: validate, deploy and start the app with the Databricks CLI.

Runs `databricks bundle validate`, `databricks bundle deploy` and `databricks bundle run <app>`
for a target (default `dev`), streaming the CLI's output. When a step fails, it explains the
common causes instead of only passing the CLI's error on:
- the app already exists, created outside this bundle: bind it to the bundle with
  `databricks bundle deployment bind <key> <app-name>` (`--bind-existing` does it and retries);
- another deployment of the app is still in progress;
- missing permissions;
- a change that needs approval (`--auto-approve`).

The CLI runs without a terminal (its prompts would hang a pipe), with the profile from
`--profile` or .env. Deploy-time settings are bundle variables: `--var serving_endpoint=NAME`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from agent_cli import console, options, prerequisites
from agent_cli.console import CliError
from agent_cli.env_file import EnvFile
from agent_cli.project import BUNDLE_KEY, PROJECT_ROOT, deployed_app_name

APP_EXISTS = re.compile(
    r"an app with the same name already exists(?::\s*(?P<name>[a-z0-9][a-z0-9-]*))?", re.I
)
APP_KEY = re.compile(r"resources\.apps\.(?P<key>\w+)")
IN_PROGRESS = re.compile(
    r"(?:cannot deploy app (?P<name>[a-z0-9][a-z0-9-]*) as there is an )?"
    r"active deployment in progress",
    re.I,
)
PERMISSION = re.compile(
    r"permission denied|PERMISSION_DENIED|does not have \S+ permission|not authorized|"
    r"access denied",
    re.I,
)
NEEDS_APPROVAL = re.compile(r"specify --auto-approve", re.I)
NOT_LOGGED_IN = re.compile(
    r"cannot configure default credentials|invalid access token|UNAUTHENTICATED|"
    r"has no \S+ profile configured",
    re.I,
)
APP_URL = re.compile(r"https://[^\s'\"<>]*databricksapps\.com[^\s'\"<>]*")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy",
        description="Validate, deploy and start the app: `databricks bundle validate`, "
        "`deploy` and `run` for a target, with the common failures explained.",
    )
    parser.add_argument(
        "-t",
        "--target",
        metavar="TARGET",
        default="dev",
        help="bundle target in databricks.yml (default: dev)",
    )
    parser.add_argument(
        "-p",
        "--profile",
        metavar="NAME",
        help="Databricks profile (default: DATABRICKS_CONFIG_PROFILE in .env)",
    )
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a bundle variable, e.g. --var serving_endpoint=NAME (repeatable)",
    )
    parser.add_argument(
        "--app-key",
        metavar="KEY",
        default=BUNDLE_KEY,
        help=f"the app's key in databricks.yml ({BUNDLE_KEY})",
    )
    parser.add_argument(
        "--bind-existing",
        action="store_true",
        help="if the app already exists outside the bundle, bind it to the bundle and retry",
    )
    parser.add_argument(
        "--auto-approve",
        action="store_true",
        help="approve changes the CLI would ask about (such as deleting or recreating resources)",
    )
    parser.add_argument(
        "--no-run", action="store_true", help="deploy only; do not start the app (bundle run)"
    )
    options.add_env_file(parser, "settings file")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class StepResult:
    returncode: int
    output: str


@dataclass(frozen=True)
class Context:
    cli: str
    args: argparse.Namespace
    profile: str | None
    env: dict[str, str]

    commit: str | None = None

    @property
    def target_args(self) -> list[str]:
        extra = ["-t", self.args.target]
        if self.profile:
            extra += ["-p", self.profile]
        variables = list(self.args.var)
        if self.commit and not any(v.startswith("git_commit=") for v in variables):
            variables.append(f"git_commit={self.commit}")
        for assignment in variables:
            extra += ["--var", assignment]
        return extra


def source_commit() -> str | None:
    """HEAD of the project's git checkout, or None outside one (databricks.yml's git_commit:
    the deployed source has no .git folder, so the deploy passes the commit)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def stream(cli: str, arguments: list[str], env: dict[str, str]) -> StepResult:
    """Run the CLI, echoing its output line by line, and keep the output for the diagnosis."""
    console.say(f"\n$ databricks {' '.join(arguments)}")
    try:
        process = subprocess.Popen(
            [cli, *arguments],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:
        raise CliError(f"cannot run {cli}: {exc}") from None
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        sys.stdout.write(console.redact(line))
        sys.stdout.flush()
    return StepResult(process.wait(), "".join(lines))


def diagnose(output: str, context: Context, step: str) -> tuple[str, str | None]:
    """What went wrong in `step`, in words, and what to do about it."""
    target = context.args.target
    profile = f" -p {context.profile}" if context.profile else ""
    if match := APP_EXISTS.search(output):
        key_match = APP_KEY.search(output)
        key = key_match["key"] if key_match else context.args.app_key
        name = match["name"] or deployed_app_name(target)
        return (
            f"the app {name!r} already exists in the workspace, and this bundle does not "
            "manage it (it was created by hand, by another bundle, or by a deploy whose "
            "state was lost)",
            f"if it is yours, bind it to the bundle and deploy again: "
            f"`databricks bundle deployment bind {key} {name} -t {target}{profile} "
            f"--auto-approve`, or run `uv run deploy --bind-existing`; otherwise delete it "
            f"(`databricks apps delete {name}`) or choose another app name in databricks.yml",
        )
    if match := IN_PROGRESS.search(output):
        name = match["name"] or deployed_app_name(target)
        return (
            f"another deployment of the app {name!r} is still in progress: an app takes "
            "one deployment at a time",
            f"wait until it finishes (`databricks apps get {name}{profile}` shows "
            "pending_deployment), then run `uv run deploy` again",
        )
    if PERMISSION.search(output):
        return (
            f"`bundle {step}` was refused for lack of a permission",
            "check who you deploy as (`databricks current-user me" + profile + "`): creating "
            "an app needs the workspace's Databricks Apps enabled and the right to create "
            "apps; the app's resources need you to hold CAN_QUERY on the serving endpoint "
            "and rights on the experiment folder; the prod target needs CAN_MANAGE on the "
            "bundle folder. A workspace admin can grant them",
        )
    if NEEDS_APPROVAL.search(output):
        return (
            f"`bundle {step}` needs approval for a change it would make (see above)",
            "read the change above; if it is what you want, run `uv run deploy --auto-approve`",
        )
    if NOT_LOGGED_IN.search(output):
        login = f"--profile {context.profile}" if context.profile else "--host <workspace-url>"
        return (
            "the Databricks CLI is not logged in to the workspace",
            f"log in with `databricks auth login {login}`, or run `uv run quickstart`",
        )
    return f"`databricks bundle {step}` failed (see its output above)", None


def run_step(
    context: Context, step: str, arguments: list[str], retry: Callable[[str], bool] | None = None
) -> str:
    result = stream(context.cli, arguments, context.env)
    if result.returncode != 0 and retry is not None and retry(result.output):
        result = stream(context.cli, arguments, context.env)
    if result.returncode != 0:
        message, hint = diagnose(result.output, context, step)
        raise CliError(message, hint=hint, exit_code=result.returncode)
    console.ok(f"bundle {step} succeeded")
    return result.output


def bind_existing(context: Context, output: str) -> bool:
    """Bind an existing app named in `output` to the bundle; True when it was bound."""
    match = APP_EXISTS.search(output)
    if not context.args.bind_existing or match is None:
        return False
    name = match["name"] or deployed_app_name(context.args.target)
    console.note(f"binding the existing app {name!r} to {context.args.app_key} (--bind-existing)")
    bind = ["bundle", "deployment", "bind", context.args.app_key, name, "--auto-approve"]
    result = stream(context.cli, [*bind, *context.target_args], context.env)
    if result.returncode != 0:
        message, hint = diagnose(result.output, context, "deployment bind")
        raise CliError(
            f"could not bind {name!r}: {message}", hint=hint, exit_code=result.returncode
        )
    return True


def make_context(args: argparse.Namespace) -> Context:
    cli = prerequisites.find_databricks_cli()
    problem = prerequisites.databricks_cli_problem(cli)
    if problem:
        raise CliError(problem, hint=prerequisites.CLI_INSTALL_HINT)
    assert cli.path is not None
    version = prerequisites.version_text(cli.version) if cli.version else "development build"
    console.ok(f"Databricks CLI {version} ({cli.path})")
    for assignment in args.var:
        if "=" not in assignment:
            raise CliError(f"--var {assignment!r} is not NAME=VALUE")
    settings = EnvFile.load(args.env_file)
    profile = args.profile or settings.get("DATABRICKS_CONFIG_PROFILE") or None
    env = dict(os.environ)
    if not profile and (host := settings.get("DATABRICKS_HOST")) and "DATABRICKS_HOST" not in env:
        env["DATABRICKS_HOST"] = host  # quickstart --host: the CLI finds its login by host
    if profile:
        console.ok(f"profile {profile}" + ("" if args.profile else f" (from {args.env_file.name})"))
    return Context(cli.path, args, profile, env, source_commit())


def run(args: argparse.Namespace) -> int:
    context = make_context(args)
    target = context.target_args
    run_step(context, "validate", ["bundle", "validate", *target])
    deploy = ["bundle", "deploy", *target] + (["--auto-approve"] if args.auto_approve else [])
    run_step(context, "deploy", deploy, retry=lambda output: bind_existing(context, output))
    name = deployed_app_name(args.target)
    if args.no_run:
        command = " ".join(["databricks", "bundle", "run", args.app_key, *target])
        console.say(f"\nDeployed; start the app with `{command}`.")
        return console.EXIT_OK
    output = run_step(context, "run", ["bundle", "run", args.app_key, *target])
    url = APP_URL.search(output)
    profile = f" --profile {context.profile}" if context.profile else ""
    console.say(f"\nThe app {name!r} is deployed and running.")
    console.say(f"Smoke-test it: uv run test-agent {url[0] if url else '<app-url>'}{profile}")
    if not url:
        console.say(f"(`databricks apps get {name}{profile}` shows the app's URL)")
    return console.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return console.guard(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
