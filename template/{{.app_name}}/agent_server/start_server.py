"""Starts the agent: the MLflow agent server around the @invoke and @stream handlers in agent.py.

`uv run start-server` runs it locally on 127.0.0.1:8000; on Databricks Apps (`uv run start-app`,
see app.yaml) it binds all interfaces on the port the platform gives in DATABRICKS_APP_PORT.
The module-level `app` is what uvicorn imports, once per worker.
"""

import argparse
import logging
import os
from pathlib import Path

from dotenv import load_dotenv

# Settings from .env first, so everything imported below sees them. Real environment variables
# win; AGENT_ENV_FILE points elsewhere (the tests use it to ignore a developer's .env).
load_dotenv(os.environ.get("AGENT_ENV_FILE") or Path(__file__).resolve().parent.parent / ".env")

import uvicorn  # noqa: E402
from mlflow.genai.agent_server import AgentServer  # noqa: E402

from agent_server import agent  # noqa: E402, F401  (importing it registers the handlers)
from agent_server.handler_adapter import adapt_registered_handlers  # noqa: E402
from agent_server.request_guard import RequestGuard  # noqa: E402
from agent_server.tracing import configure_tracing  # noqa: E402

logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper())

configure_tracing()
adapt_registered_handlers()
agent_server = AgentServer("ResponsesAgent")
app = agent_server.app
app.add_middleware(RequestGuard)


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
        # The Apps proxy and load balancers keep connections open for a while; uvicorn's 5 s
        # default closes them under load and the client sees a read error.
        timeout_keep_alive=65,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
