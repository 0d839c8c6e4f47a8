"""`uv run test-agent URL`: smoke-test a deployed agent app, or any running agent server.

Checks `GET /health`, then `POST /invocations` without and with streaming for each message,
and prints each check with its latency (and the time to the first token of a stream). Exits 1
when any check fails, with the reason: unreachable, authentication rejected, a bad status,
a malformed answer or stream, or an error event in the middle of a stream.

Authentication: `--token`, else a token from a Databricks profile through databricks-sdk
(`--profile`, else the one in .env, else the SDK's defaults). A server on this machine gets
no token unless `--token` is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from urllib.parse import urlsplit

from agent_cli import console, options
from agent_cli.agent_checks import AgentClient, CheckResult, report
from agent_cli.console import CliError
from agent_cli.env_file import EnvFile
from agent_cli.workspace_auth import Auth, bearer_headers

DEFAULT_MESSAGE = "Hello! Please answer in one short sentence."
DEFAULT_TIMEOUT_SECONDS = 120.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ROUTE_SUFFIXES = ("/invocations", "/responses", "/health")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="test-agent",
        description="Smoke-test a deployed agent app: GET /health, then POST /invocations "
        "without and with streaming. Exits 1 if any check fails.",
    )
    parser.add_argument(
        "url",
        help="the app's URL, e.g. https://dev-my-agent-1234.aws.databricksapps.com "
        "(or a local server, http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="bearer token to send (default: an OAuth token from the Databricks profile)",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="Databricks profile for the token (default: the one in .env)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--health-only", action="store_true", help="only check GET /health")
    mode.add_argument("--stream-only", action="store_true", help="skip the non-streaming call")
    mode.add_argument("--no-stream", action="store_true", help="skip the streaming call")
    parser.add_argument(
        "--message",
        metavar="TEXT",
        action="append",
        help=f"a user message to send; repeat for several requests (default: {DEFAULT_MESSAGE!r})",
    )
    parser.add_argument(
        "--chat-style",
        action="store_true",
        help='send the older chat-style body {"messages": [...]} instead of {"input": [...]}',
    )
    options.add_seconds(parser, "--timeout", DEFAULT_TIMEOUT_SECONDS, "each answer")
    options.add_env_file(parser, "settings file with the default profile")
    return parser.parse_args(argv)


def base_url(url: str) -> str:
    """The server's root URL: checked, without a trailing slash or route."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(
            f"not an http(s) URL: {url!r}",
            hint="pass the app's URL, e.g. https://dev-my-agent-1234.aws.databricksapps.com",
        )
    path = parts.path.rstrip("/")
    for suffix in ROUTE_SUFFIXES:
        path = path.removesuffix(suffix)
    return f"{parts.scheme}://{parts.netloc}{path}"


def is_local(url: str) -> bool:
    return urlsplit(url).hostname in LOCAL_HOSTS


def default_auth(args: argparse.Namespace) -> Auth:
    if args.profile:
        return Auth(profile=args.profile)
    env = EnvFile.load(args.env_file)
    if profile := env.get("DATABRICKS_CONFIG_PROFILE"):
        return Auth(profile=profile)
    return Auth(host=env.get("DATABRICKS_HOST") or None)


def auth_headers(args: argparse.Namespace, url: str) -> tuple[dict[str, str], str]:
    """The headers to send, and how they were obtained (never the token itself)."""
    if args.token:
        console.add_secret(args.token)
        return {"Authorization": f"Bearer {args.token}"}, "the token from --token"
    if is_local(url) and not args.profile:
        return {}, "no token (a local server)"
    auth = default_auth(args)
    return bearer_headers(auth, timeout=min(args.timeout, 30)), f"a token from {auth}"


def request_body(message: str, chat_style: bool) -> dict[str, object]:
    messages = [{"role": "user", "content": message}]
    return {"messages": messages} if chat_style else {"input": messages}


def planned_checks(
    client: AgentClient, args: argparse.Namespace
) -> list[Callable[[], CheckResult]]:
    checks: list[Callable[[], CheckResult]] = [client.health]
    if args.health_only:
        return checks
    for message in args.message or [DEFAULT_MESSAGE]:
        body = request_body(message, args.chat_style)
        if not args.stream_only:
            checks.append(lambda body=body: client.invoke(body))
        if not args.no_stream:
            checks.append(lambda body=body: client.stream(body))
    return checks


def run(args: argparse.Namespace) -> int:
    url = base_url(args.url)
    if args.timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    headers, source = auth_headers(args, url)
    console.say(f"Testing {url} with {source}")
    results: list[CheckResult] = []
    with AgentClient(url, headers, args.timeout) as client:
        checks = planned_checks(client, args)
        for check in checks:
            result = check()
            report(result)
            results.append(result)
            if result.stops_run:
                break
    failed = [r for r in results if not r.passed]
    skipped = len(checks) - len(results)
    if not failed:
        console.say(f"\ntest-agent passed: {len(results)} checks")
        return console.EXIT_OK
    summary = f"{len(failed)} of {len(checks)} checks failed"
    if skipped:
        summary += f" ({skipped} not run after: {failed[-1].detail})"
    raise CliError(f"test-agent failed: {summary}", hint=_hint(failed[0]))


def _hint(first_failure: CheckResult) -> str | None:
    reason = first_failure.detail
    if reason.startswith("authentication"):
        return (
            "Databricks Apps take an OAuth token of a user allowed to use the app: log in with "
            "`databricks auth login --profile <name>` and pass --profile <name>, or pass --token"
        )
    if reason.startswith("cannot connect"):
        return (
            "check the URL and that the server is running "
            "(`uv run start-server` locally, `databricks apps get <app-name>` when deployed)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return console.guard(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
