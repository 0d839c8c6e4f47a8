"""Settings read from the environment, and the Databricks workspace client.

The client is built on first use, never at import: building it contacts the workspace host, and
with the SDK's defaults an unreachable host blocks the caller for up to 300 s. The wait is bounded
here, and async code builds it on a worker thread so the event loop keeps serving.
"""

import os
import threading

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from agent_server.errors import ConfigurationError

# Bound on how long a call to the workspace may keep retrying (the SDK's default is 300 s).
RETRY_TIMEOUT_SECONDS = int(os.environ.get("DATABRICKS_RETRY_TIMEOUT_SECONDS", "20"))
HTTP_TIMEOUT_SECONDS = int(os.environ.get("DATABRICKS_HTTP_TIMEOUT_SECONDS", "60"))

_lock = threading.Lock()
_client: WorkspaceClient | None = None


def serving_endpoint() -> str:
    """The LLM endpoint: set by the app's `serving-endpoint` resource, or by .env locally."""
    name = os.environ.get("SERVING_ENDPOINT", "").strip()
    if not name:
        raise ConfigurationError(
            "SERVING_ENDPOINT is not set: add it to .env (see .env.example) for local runs; "
            "on Databricks Apps it comes from the app's serving-endpoint resource."
        )
    return name


def workspace_client() -> WorkspaceClient:
    """The process-wide WorkspaceClient, authenticated from the environment or a CLI profile."""
    global _client
    with _lock:
        if _client is None:
            try:
                config = Config(
                    retry_timeout_seconds=RETRY_TIMEOUT_SECONDS,
                    http_timeout_seconds=HTTP_TIMEOUT_SECONDS,
                )
            except ValueError as exc:
                raise ConfigurationError(
                    f"Databricks authentication is not configured ({exc}). "
                    "Run `databricks auth login` and set DATABRICKS_CONFIG_PROFILE in .env."
                ) from exc
            _client = WorkspaceClient(config=config)
        return _client
