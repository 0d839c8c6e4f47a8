"""`uv run preflight`: start the agent locally, send it the input example, check the answers.

Starts `start-server` on 127.0.0.1, on a port the system picks (with the project's .env, as
`uv run start-server` does), checks `GET /health`, sends the request in input_example.json
to `/invocations` without and then with streaming, checks that each answer is well formed and
has output, stops the server, and reports pass or fail with timings. On a failure it shows
the end of the server's log.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from agent_cli import console, options
from agent_cli.agent_checks import AgentClient, CheckResult, report
from agent_cli.console import CliError
from agent_cli.local_server import running
from agent_cli.project import INPUT_EXAMPLE_FILE, PROJECT_ROOT

DEFAULT_TIMEOUT_SECONDS = 120.0
DEFAULT_BOOT_TIMEOUT_SECONDS = 90.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="preflight",
        description="Start the agent server on a free local port, send it the input example "
        "without and with streaming, check the answers, stop it, and report.",
    )
    parser.add_argument(
        "--input-file",
        metavar="PATH",
        type=Path,
        default=INPUT_EXAMPLE_FILE,
        help='JSON request to send: {"input": [...]} or {"messages": [...]} '
        f"(default: {INPUT_EXAMPLE_FILE.name})",
    )
    options.add_seconds(parser, "--timeout", DEFAULT_TIMEOUT_SECONDS, "each answer")
    options.add_seconds(
        parser, "--boot-timeout", DEFAULT_BOOT_TIMEOUT_SECONDS, "the server to start"
    )
    options.add_env_file(parser, "settings file the server loads")
    return parser.parse_args(argv)


def load_request(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read the input example {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"the input example {path} is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not ({"input", "messages"} & body.keys()):
        raise CliError(
            f"the input example {path} is not an agent request",
            hint='write a JSON object such as {"input": [{"role": "user", "content": "Hi"}]}',
        )
    body.pop("stream", None)  # preflight sends it both ways
    return body


def server_env(env_file: Path) -> dict[str, str]:
    # start_server.py loads AGENT_ENV_FILE (default .env); real environment variables win.
    return {**os.environ, "AGENT_ENV_FILE": str(env_file)}


def hint_for(failures: list[CheckResult]) -> str:
    reasons = " ".join(result.detail for result in failures)
    if "HTTP 501" in reasons:
        return (
            "the agent answers 501 Not Implemented: write its @invoke and @stream handlers in "
            "agent_server/agent.py (README.md says how)"
        )
    if "HTTP 503" in reasons:
        return "the agent is missing a setting or credentials: run `uv run quickstart`"
    return "the server log above says more; `uv run start-server` runs the server on its own"


def run(args: argparse.Namespace) -> int:
    body = load_request(args.input_file)
    started = time.monotonic()
    console.say(f"Starting the agent server ({PROJECT_ROOT.name}) on a free local port ...")
    with running(PROJECT_ROOT, server_env(args.env_file), args.boot_timeout) as server:
        console.ok(f"server ready on {server.url} after {server.boot_seconds:.1f} s")
        with AgentClient(server.url, {}, args.timeout) as client:
            results: list[CheckResult] = []
            for check in (client.health, lambda: client.invoke(body), lambda: client.stream(body)):
                results.append(check())
                report(results[-1])
        failures = [result for result in results if not result.passed]
        if failures:
            console.say(f"\nThe server's log ends with:\n{server.log_tail()}")
    elapsed = time.monotonic() - started
    if failures:
        raise CliError(
            f"preflight failed after {elapsed:.1f} s: "
            f"{len(failures)} of {len(results)} checks failed",
            hint=hint_for(failures),
        )
    console.say(f"\npreflight passed in {elapsed:.1f} s: the agent answers, streaming and not.")
    console.say("Next: `uv run deploy` deploys it; `uv run test-agent <app-url>` checks it.")
    return console.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return console.guard(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
