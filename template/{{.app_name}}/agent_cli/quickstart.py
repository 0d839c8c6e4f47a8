"""`uv run quickstart`: connect this project to your Databricks workspace for local runs.

1. Checks the tools: uv, and the Databricks CLI (needed to log in and to deploy; local runs
   work without it once a profile exists).
2. Authenticates through databricks-sdk with `--profile` or `--host`; without them, with the
   profile (or host) already in .env, else DATABRICKS_CONFIG_PROFILE or DATABRICKS_HOST from
   the environment, else, only when stdin is a terminal, a profile you pick from the config
   file. The choice is checked with a real call: who the current user is.
3. Checks that the serving endpoint exists.
4. Finds or creates the MLflow experiment for local runs, `/Users/<you>/<app>-local`.
5. Updates .env in place (created from .env.example): DATABRICKS_CONFIG_PROFILE (or
   DATABRICKS_HOST), MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID and SERVING_ENDPOINT, and for an
   agent with memory on Lakebase, LAKEBASE_SCHEMA: the schema of your local runs' memory. A value
   you changed is kept unless a flag says otherwise (`--overwrite`, or the flag for that
   value); values tied to the workspace follow a `--profile`/`--host` that switches it.

Re-running changes nothing. No token or secret is written or printed, and no YAML is edited:
deploy-time settings live in databricks.yml and its variables (`uv run deploy --var ...`).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied

from agent_cli import console, experiment, options, prerequisites
from agent_cli.console import CliError
from agent_cli.env_file import EnvFile
from agent_cli.experiment import Experiment
from agent_cli.project import (
    APP_NAME,
    BUNDLE_KEY,
    DEFAULT_SERVING_ENDPOINT,
    ENV_EXAMPLE_FILE,
    GENIE_SPACE_ID,
    LAKEBASE_MEMORY,
)
from agent_cli.workspace_auth import (
    DEFAULT_TIMEOUT_SECONDS,
    Auth,
    Workspace,
    config_file,
    connect,
    list_profiles,
    unreachable,
)

PROFILE_KEY = "DATABRICKS_CONFIG_PROFILE"
HOST_KEY = "DATABRICKS_HOST"
TRACKING_KEY = "MLFLOW_TRACKING_URI"
EXPERIMENT_KEY = "MLFLOW_EXPERIMENT_ID"
ENDPOINT_KEY = "SERVING_ENDPOINT"
SCHEMA_KEY = "LAKEBASE_SCHEMA"
PROFILE_PROMPT_ATTEMPTS = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="quickstart",
        description="Connect the project to your Databricks workspace for local runs: check "
        "the tools, authenticate, check the serving endpoint, find or create the MLflow "
        "experiment, and update .env. Re-running changes nothing.",
    )
    workspace = parser.add_mutually_exclusive_group()
    workspace.add_argument(
        "--profile",
        metavar="NAME",
        help="Databricks config profile (default: the one in .env, or ask)",
    )
    workspace.add_argument(
        "--host",
        metavar="URL",
        help="workspace URL, authenticated from the environment or `databricks auth login "
        "--host URL`, for use without a profile",
    )
    parser.add_argument(
        "--serving-endpoint",
        metavar="NAME",
        help="the LLM serving endpoint "
        f"(default: the one in .env, else {DEFAULT_SERVING_ENDPOINT})",
    )
    parser.add_argument(
        "--experiment",
        metavar="NAME",
        help=f"MLflow experiment for local runs (default: /Users/<you>/{APP_NAME}-local); "
        "a bare name goes to your user folder",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace values in .env that differ from what quickstart would write",
    )
    parser.add_argument(
        "-y", "--yes", action="store_true", help="make the changes without asking (for CI)"
    )
    options.add_env_file(parser, "file to update")
    options.add_seconds(parser, "--timeout", DEFAULT_TIMEOUT_SECONDS, "the workspace")
    return parser.parse_args(argv)


# --- 1. Tools --------------------------------------------------------------------------------


def check_tools() -> str | None:
    """Report uv and the Databricks CLI; returns the CLI's problem, if any, for the summary."""
    console.heading("Tools")
    uv = prerequisites.find_uv()
    if not uv.found:
        raise CliError(
            "uv is not installed: it runs this project", hint=prerequisites.UV_INSTALL_HINT
        )
    version = prerequisites.version_text(uv.version) if uv.version else "version unknown"
    console.ok(f"uv {version} ({uv.path})")
    cli = prerequisites.find_databricks_cli()
    problem = prerequisites.databricks_cli_problem(cli)
    if problem is None:
        version = prerequisites.version_text(cli.version) if cli.version else "development build"
        console.ok(f"Databricks CLI {version} ({cli.path})")
        return None
    console.warn(f"{problem}: it logs in and deploys; local runs do not need it")
    console.note(f"to {prerequisites.CLI_INSTALL_HINT}")
    return problem


# --- 2. Authentication -------------------------------------------------------------------------


def choose_auth(args: argparse.Namespace, env: EnvFile) -> tuple[Auth, str]:
    """The workspace to use, and where that choice came from."""
    if args.profile:
        return Auth(profile=args.profile), "--profile"
    if args.host:
        return Auth(host=args.host), "--host"
    if env.exists and (profile := env.get(PROFILE_KEY)):
        return Auth(profile=profile), f"{PROFILE_KEY} in {env.path.name}"
    if env.exists and (host := env.get(HOST_KEY)):
        return Auth(host=host), f"{HOST_KEY} in {env.path.name}"
    if profile := os.environ.get(PROFILE_KEY):
        return Auth(profile=profile), f"{PROFILE_KEY} in the environment"
    if host := os.environ.get(HOST_KEY):
        return Auth(host=host), f"{HOST_KEY} in the environment"
    return Auth(profile=ask_profile()), "your choice"


def ask_profile() -> str:
    profiles = list_profiles()
    names = ", ".join(p.name for p in profiles)
    if not console.interactive():
        listed = f" (profiles in {config_file()}: {names})" if profiles else ""
        raise CliError(
            "no Databricks profile given, and stdin is not a terminal to ask for one",
            hint=f"pass --profile NAME{listed}, or --host URL",
        )
    if not profiles:
        raise CliError(
            f"there are no Databricks profiles in {config_file()}",
            hint="log in first: `databricks auth login --host <workspace-url>` creates a "
            "profile; then run `uv run quickstart` again",
        )
    console.say(f"\nDatabricks profiles in {config_file()}:")
    for number, profile in enumerate(profiles, start=1):
        console.say(f"  {number}) {profile.name:<20} {profile.host or ''}")
    for _ in range(PROFILE_PROMPT_ATTEMPTS):
        answer = console.ask(f"Profile to use [1-{len(profiles)} or a name, default 1]: ")
        if not answer:
            return profiles[0].name
        if answer.isdigit() and 1 <= int(answer) <= len(profiles):
            return profiles[int(answer) - 1].name
        if answer in {p.name for p in profiles}:
            return answer
        console.warn(f"{answer!r} is not one of the profiles above")
    raise CliError("no profile chosen", hint="pass --profile NAME")


def authenticate(args: argparse.Namespace, env: EnvFile) -> tuple[Auth, Workspace]:
    auth, source = choose_auth(args, env)
    console.heading("Workspace")
    workspace = connect(auth, args.timeout)
    console.ok(f"{auth} (from {source}): {workspace.host} as {workspace.user_name}")
    return auth, workspace


# --- 3. Serving endpoint ---------------------------------------------------------------------


def check_endpoint(workspace: Workspace, name: str, timeout: float) -> str | None:
    """Report the serving endpoint; returns the problem when it does not exist."""
    console.heading("Serving endpoint")
    try:
        endpoint = workspace.client.serving_endpoints.get(name)
    except NotFound:
        problem = f"the serving endpoint {name!r} does not exist in {workspace.host}"
        console.failed(problem)
        return problem
    except PermissionDenied as exc:
        console.warn(f"cannot read the serving endpoint {name!r} ({exc}); not checked")
        return None
    except OSError as exc:  # another API error, or no answer in time
        raise unreachable(Auth(host=workspace.host), workspace.host, timeout, exc) from None
    ready = endpoint.state.ready.value if endpoint.state and endpoint.state.ready else "unknown"
    if ready == "READY":
        console.ok(f"{name} (READY)")
    else:
        console.warn(f"{name} exists but is {ready}: the agent's calls fail until it is ready")
    return None


def check_genie_space(workspace: Workspace, space_id: str, timeout: float) -> str | None:
    """Report the Genie space and the SQL warehouse it runs on; returns the problem when the
    space does not exist. The app resource `genie_space` grants the app's service principal
    CAN_RUN on the space only: Genie answers with the space's warehouse and reads its tables
    as the caller, so the service principal also needs CAN_USE on that warehouse and SELECT on
    the tables, which only their owners or an admin can see and grant."""
    console.heading("Genie space")
    try:
        space = workspace.client.genie.get_space(space_id)
    except NotFound:
        problem = f"the Genie space {space_id} does not exist in {workspace.host}"
        console.failed(problem)
        return problem
    except PermissionDenied as exc:
        console.warn(f"cannot read the Genie space {space_id} ({exc}); not checked")
        return None
    except OSError as exc:  # another API error, or no answer in time
        raise unreachable(Auth(host=workspace.host), workspace.host, timeout, exc) from None
    title = f" ({space.title})" if space.title else ""
    console.ok(f"Genie space {space_id}{title}")
    if space.warehouse_id:
        console.ok(f"it runs on SQL warehouse {space.warehouse_id}")
        warehouse = f"CAN_USE on SQL warehouse {space.warehouse_id}"
    else:
        warehouse = "CAN_USE on the space's SQL warehouse"
    console.say(
        f"  the app's service principal needs {warehouse} and SELECT on the space's tables "
        "(grant them once; README.md, 'Workspace resources')"
    )
    return None


# --- 4. MLflow experiment --------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentPlan:
    name: str
    found: Experiment | None  # None: to be created
    action: str  # "keep", "reuse", "restore" or "create"


def plan_experiment(
    args: argparse.Namespace, client: WorkspaceClient, user_name: str, current_id: str | None
) -> ExperimentPlan:
    console.heading("MLflow experiment")
    if current_id:
        found = experiment.by_id(client, current_id)
        if found is None or not found.active:
            state = "does not exist" if found is None else "is deleted"
            raise CliError(
                f"the experiment {EXPERIMENT_KEY}={current_id} in .env {state} in this workspace",
                hint="restore it, or pass --overwrite to use the project's own experiment",
            )
        console.ok(f"{found.name} (id {found.experiment_id}, from .env)")
        return ExperimentPlan(found.name, found, "keep")
    default = experiment.default_name(user_name, APP_NAME)
    name = experiment.full_name(args.experiment, user_name) if args.experiment else default
    found = experiment.by_name(client, name)
    if found is None:
        console.note(f"{name} does not exist yet: it will be created")
        return ExperimentPlan(name, None, "create")
    if not found.active:
        console.note(f"{name} (id {found.experiment_id}) is deleted: it will be restored")
        return ExperimentPlan(name, found, "restore")
    console.ok(f"{name} (id {found.experiment_id}, exists)")
    return ExperimentPlan(name, found, "reuse")


def carry_out(plan: ExperimentPlan, client: WorkspaceClient) -> Experiment:
    if plan.action == "create":
        created = experiment.create(client, plan.name)
        console.ok(f"created {created.name} (id {created.experiment_id})")
        return created
    assert plan.found is not None
    if plan.action == "restore":
        restored = experiment.restore(client, plan.found)
        console.ok(f"restored {restored.name} (id {restored.experiment_id})")
        return restored
    return plan.found


# --- 5. .env ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    key: str
    value: str
    forced_by: str | None  # the flag or event that may replace a different value, if any


def decide(update: Update, current: str | None) -> str:
    """'set', 'unchanged', 'replace' or 'keep' for one key of .env."""
    if not current:
        return "set"
    if current == update.value:
        return "unchanged"
    return "replace" if update.forced_by else "keep"


def show(update: Update, current: str | None, action: str) -> None:
    line = f"{update.key}={update.value}"
    if action == "set":
        console.note(f"set      {line}")
    elif action == "unchanged":
        console.ok(f"{line} (unchanged)")
    elif action == "replace":
        console.note(f"replace  {update.key}: {current} -> {update.value} ({update.forced_by})")
    else:
        console.warn(
            f"keep     {update.key}={current} (your value; quickstart would write "
            f"{update.value}; --overwrite replaces it)"
        )


def previous_auth(env: EnvFile) -> Auth | None:
    if not env.exists:
        return None
    if profile := env.get(PROFILE_KEY):
        return Auth(profile=profile)
    if host := env.get(HOST_KEY):
        return Auth(host=host)
    return None


def local_memory_schema(user_name: str) -> str:
    """The schema of your local runs' memory on Lakebase: local_<bundle key>_<you>.

    Every identity keeps the memory in a schema it creates and owns
    (agent_server/runtime/memory.py): the app's role may only connect and create schemas, and only a
    table's owner may alter it. So no grant is needed, and developers sharing a Lakebase database
    do not collide.
    """
    name = f"local_{BUNDLE_KEY}_{user_name.split('@')[0]}".lower()
    return re.sub(r"[^a-z0-9_]", "_", name)[:63]  # a plain PostgreSQL identifier


# --- The command -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    cli_problem = check_tools()
    env = EnvFile.load(args.env_file, template=ENV_EXAMPLE_FILE)
    auth, workspace = authenticate(args, env)
    if auth.host:  # written as the SDK resolved it, so a re-run finds the same value
        auth = Auth(host=workspace.host)

    before = previous_auth(env)
    switched = before is not None and before != auth
    fresh = None if env.exists else f"new {env.path.name}"
    workspace_event = fresh or ("another workspace" if switched else None)

    current_endpoint = env.get(ENDPOINT_KEY) if env.exists and not args.overwrite else None
    endpoint = args.serving_endpoint or current_endpoint or DEFAULT_SERVING_ENDPOINT
    endpoint_problem = check_endpoint(workspace, endpoint, args.timeout)
    genie_space = env.get("GENIE_SPACE_ID") or GENIE_SPACE_ID
    genie_problem = check_genie_space(workspace, genie_space, args.timeout) if genie_space else None

    overwrite = "--overwrite" if args.overwrite else None
    keep_experiment_id = not (workspace_event or overwrite or args.experiment)
    current_id = env.get(EXPERIMENT_KEY) if keep_experiment_id else None
    plan = plan_experiment(args, workspace.client, workspace.user_name, current_id)

    auth_flag = "--profile" if args.profile else "--host" if args.host else None
    auth_key, other_key = (PROFILE_KEY, HOST_KEY) if auth.profile else (HOST_KEY, PROFILE_KEY)
    pending_id = plan.found.experiment_id if plan.found else "<id of the new experiment>"
    updates = [
        Update(auth_key, auth.profile or workspace.host, fresh or auth_flag),
        Update(
            TRACKING_KEY,
            f"databricks://{auth.profile}" if auth.profile else "databricks",
            workspace_event or overwrite,
        ),
        Update(
            EXPERIMENT_KEY,
            pending_id,
            workspace_event or overwrite or ("--experiment" if args.experiment else None),
        ),
        Update(
            ENDPOINT_KEY,
            endpoint,
            fresh or overwrite or ("--serving-endpoint" if args.serving_endpoint else None),
        ),
    ]
    if LAKEBASE_MEMORY:
        schema = local_memory_schema(workspace.user_name)
        updates.append(Update(SCHEMA_KEY, schema, workspace_event or overwrite))

    console.heading(f"Settings ({env.path})")
    actions = {}
    for update in updates:
        current = env.get(update.key) if env.exists else None
        actions[update.key] = decide(update, current)
        show(update, current, actions[update.key])
    # The other way to name the workspace would override this one: comment it out when the
    # choice was explicit (a flag) or the file is new (.env.example's DEFAULT profile).
    conflicting = bool(env.get(other_key))
    drop_other = conflicting and bool(auth_flag or fresh)
    if drop_other:
        console.note(f"comment out {other_key} (it would override {auth})")
    elif conflicting:
        console.warn(
            f"{other_key} in {env.path.name} overrides {auth}: remove it, or pass "
            f"--{'profile' if auth.profile else 'host'} to comment it out"
        )

    steps = [f"{plan.action} the MLflow experiment"] if plan.action in ("create", "restore") else []
    if any(a in ("set", "replace") for a in actions.values()) or drop_other:
        steps.append(f"write {env.path.name}")
    if steps:
        if not console.confirm(f"Proceed: {' and '.join(steps)}?", assume_yes=args.yes):
            raise CliError("cancelled: nothing was changed")
        chosen = carry_out(plan, workspace.client)
        for update in updates:
            if actions[update.key] in ("set", "replace"):
                value = chosen.experiment_id if update.key == EXPERIMENT_KEY else update.value
                env.set(update.key, value)
        if drop_other:
            env.comment_out(other_key, f"quickstart uses {auth}")
        env.save()
        console.ok(f"wrote {env.path}")
    else:
        chosen = carry_out(plan, workspace.client)
        console.ok(f"{env.path.name} is up to date: nothing to change")

    summarize(workspace, chosen, endpoint, cli_problem)
    if endpoint_problem:
        raise CliError(
            endpoint_problem,
            hint="list the endpoints with `databricks serving-endpoints list`, then run "
            "`uv run quickstart --serving-endpoint NAME` (deploy it with "
            "`uv run deploy --var serving_endpoint=NAME`)",
        )
    if genie_problem:
        raise CliError(
            genie_problem,
            hint="list the spaces with `databricks genie list-spaces`, then set GENIE_SPACE_ID "
            "in .env and the genie_space resource in databricks.yml",
        )
    return console.EXIT_OK


def summarize(
    workspace: Workspace, chosen: Experiment, endpoint: str, cli_problem: str | None
) -> None:
    console.heading("Ready for local runs")
    console.say(f"  workspace    {workspace.host} ({workspace.user_name})")
    console.say(f"  experiment   {workspace.host}/ml/experiments/{chosen.experiment_id}")
    console.say(f"  endpoint     {endpoint}")
    console.say("\nNext:")
    console.say("  uv run start-server   # the agent on http://127.0.0.1:8000, traced to MLflow")
    console.say("  uv run preflight      # start it, send the input example, check the answers")
    deploy = "uv run deploy"
    if endpoint != DEFAULT_SERVING_ENDPOINT:
        deploy += f" --var serving_endpoint={endpoint}"
    console.say(f"  {deploy:<21} # validate, deploy and start the app (target dev)")
    if cli_problem:
        console.say(f"\nBefore `uv run deploy`: {cli_problem} ({prerequisites.CLI_INSTALL_HINT}).")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return console.guard(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
