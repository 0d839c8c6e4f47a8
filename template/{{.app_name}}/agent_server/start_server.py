"""Starts the agent: the MLflow agent server around the @invoke and @stream handlers in agent.py.

`uv run start-server` runs it locally on 127.0.0.1:8000; on Databricks Apps (`uv run start-app`,
see app.yaml) it binds all interfaces on the port the platform gives in DATABRICKS_APP_PORT.
The module-level `app` is what uvicorn imports, once per worker.

On SIGTERM (how Databricks Apps stops an app, with SIGKILL 15 s later) the server stops
accepting connections, lets requests in flight finish for up to AGENT_SHUTDOWN_GRACE_SECONDS,
then exports the traces still queued (tracing.flush_traces) before it exits.
"""

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

# Settings from .env first, so everything imported below sees them. Real environment variables
# win; AGENT_ENV_FILE points elsewhere (the tests use it to ignore a developer's .env).
load_dotenv(os.environ.get("AGENT_ENV_FILE") or Path(__file__).resolve().parent.parent / ".env")

from agent_server.runtime.redaction import install_log_redaction  # noqa: E402

# Before anything logs: no log line of this process may carry a token (see redaction.py).
install_log_redaction()

import uvicorn  # noqa: E402
from mlflow.genai.agent_server import AgentServer  # noqa: E402

from agent_server import agent  # noqa: E402, F401  (importing it registers the handlers)
from agent_server.runtime.handler_adapter import adapt_registered_handlers, shutdown_workers  # noqa: E402
from agent_server.runtime.request_guard import RequestGuard  # noqa: E402
from agent_server.runtime.tracing import configure_tracing, flush_traces  # noqa: E402

logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper())

# Seconds that requests in flight get to finish after SIGTERM; the trace flush comes after.
SHUTDOWN_GRACE_SECONDS = float(os.environ.get("AGENT_SHUTDOWN_GRACE_SECONDS", "10"))
# Longer than the idle timeout of the proxies in front (uvicorn's 5 s default closes connections
# that a client is about to reuse, and under load the client sees a read error).
KEEP_ALIVE_SECONDS = 65

configure_tracing()
adapt_registered_handlers()
agent_server = AgentServer("ResponsesAgent")
app = agent_server.app
app.add_middleware(RequestGuard)
if importlib.util.find_spec("agent_server.runtime.chat_ui"):  # the chat page (chat_ui=yes)
    from agent_server.runtime.chat_ui import mount_chat_ui

    mount_chat_ui(app)
_mlflow_lifespan = app.router.lifespan_context


@contextlib.asynccontextmanager
async def _lifespan(app_: Any) -> AsyncIterator[Any]:
    async with _mlflow_lifespan(app_) as state:
        yield state
    # Requests in flight have ended, or were cancelled after the grace period: the flush runs
    # off the event loop so that cancelled requests can still end their trace spans.
    shutdown_workers()
    await asyncio.to_thread(flush_traces)


app.router.lifespan_context = _lifespan

# Everything built so far lives as long as the process: keep it out of garbage collections,
# which then only walk what requests create (see cancellation.release_abandoned).
gc.collect()
gc.freeze()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    on_apps = "DATABRICKS_APP_PORT" in os.environ
    parser = argparse.ArgumentParser(
        prog="start-server", description="Run the agent server (MLflow agent server + uvicorn)."
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0" if on_apps else "127.0.0.1",
        help="interface to bind (default: 127.0.0.1 locally, all interfaces on Databricks Apps)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("DATABRICKS_APP_PORT", "8000")),
        help="port to bind (default: $DATABRICKS_APP_PORT on Databricks Apps, else 8000)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--reload", action="store_true", help="restart when the code changes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    uvicorn.run(
        "agent_server.start_server:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        reload=args.reload,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


if __name__ == "__main__":
    main()
