"""Settings read from the environment, and the Databricks workspace client.

The client is built on first use, never at import: building it contacts the workspace host, and
with the SDK's defaults an unreachable host blocks the caller for up to 300 s. Here:
- one build runs at a time, on its own thread, and every request that needs the client waits
  for that build (never a queue of builds, one after another);
- a request waits at most AGENT_WORKSPACE_WAIT_SECONDS, then fails with 503 while the build goes
  on; a failed build is retried by the next request;
- the SDK's own retries stop after DATABRICKS_RETRY_TIMEOUT_SECONDS (a host that refuses
  connections) or one DATABRICKS_HTTP_TIMEOUT_SECONDS (a host that accepts and never answers).
No thread of the event loop ever waits for the host, so /health keeps answering.
"""

import asyncio
import os
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from agent_server.runtime.errors import ConfigurationError, UpstreamBusyError

# Bound on how long a call to the workspace may keep retrying (the SDK's default is 300 s).
RETRY_TIMEOUT_SECONDS = int(os.environ.get("DATABRICKS_RETRY_TIMEOUT_SECONDS", "20"))
HTTP_TIMEOUT_SECONDS = int(os.environ.get("DATABRICKS_HTTP_TIMEOUT_SECONDS", "60"))
# Longest a request waits for the workspace client to be built before it fails with 503.
WORKSPACE_WAIT_SECONDS = float(os.environ.get("AGENT_WORKSPACE_WAIT_SECONDS", "15"))
# LLM calls: seconds to wait for a connection, a write or the next piece of the answer, and
# retries of a call that failed before its answer started (429, 5xx, connection errors,
# timeouts). The client never retries once the answer has started streaming.
LLM_TIMEOUT_SECONDS = float(os.environ.get("AGENT_LLM_TIMEOUT_SECONDS", "60"))
LLM_MAX_RETRIES = int(os.environ.get("AGENT_LLM_MAX_RETRIES", "2"))

_lock = threading.Lock()
_client: WorkspaceClient | None = None
_build: Future[WorkspaceClient] | None = None


def serving_endpoint() -> str:
    """The LLM endpoint: set by the app's `serving-endpoint` resource, or by .env locally."""
    name = os.environ.get("SERVING_ENDPOINT", "").strip()
    if not name:
        raise ConfigurationError(
            "SERVING_ENDPOINT is not set: add it to .env (see .env.example) for local runs; "
            "on Databricks Apps it comes from the app's serving-endpoint resource."
        )
    return name


def workspace_client(wait_seconds: float | None = None) -> WorkspaceClient:
    """The process-wide WorkspaceClient, authenticated from the environment or a CLI profile.

    Waits at most `wait_seconds` (default AGENT_WORKSPACE_WAIT_SECONDS) for it to be built.
    """
    wait = WORKSPACE_WAIT_SECONDS if wait_seconds is None else wait_seconds
    try:
        return _current_build().result(timeout=wait)
    except FutureTimeout:
        raise _not_answering(wait) from None


async def wait_for_workspace_client(wait_seconds: float | None = None) -> WorkspaceClient:
    """`workspace_client()` for async code: waits on the event loop, holding no thread.

    Call it before building anything on a worker thread (asyncio.to_thread): a thread that waits
    for the workspace is taken from asyncio's small default pool for up to the whole wait.
    """
    wait = WORKSPACE_WAIT_SECONDS if wait_seconds is None else wait_seconds
    build = asyncio.wrap_future(_current_build())
    # asyncio.wait, not wait_for: a timeout must not cancel the build the others wait for.
    done, _ = await asyncio.wait({build}, timeout=wait)
    if not done:
        raise _not_answering(wait)
    return build.result()


def _current_build() -> Future[WorkspaceClient]:
    """The build to wait for: done at once if the client exists, else the one running or new."""
    global _build
    with _lock:
        if _client is not None:
            ready: Future[WorkspaceClient] = Future()
            ready.set_result(_client)
            return ready
        if _build is None or _build.done():
            _build = Future()
            threading.Thread(
                target=_run_build, args=(_build,), name="workspace-client", daemon=True
            ).start()
        return _build


def _not_answering(wait: float) -> UpstreamBusyError:
    return UpstreamBusyError(
        f"The Databricks workspace {_host_for_message()} did not answer within {wait:g} s "
        "(AGENT_WORKSPACE_WAIT_SECONDS); try again shortly."
    )


def _run_build(build: Future[WorkspaceClient]) -> None:
    global _client
    try:
        client = _new_client()
    except BaseException as exc:
        build.set_exception(exc)
        return
    with _lock:
        _client = client
    build.set_result(client)


def _new_client() -> WorkspaceClient:
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
    return WorkspaceClient(config=config)


def _host_for_message() -> str:
    """The host without anything that could be a credential (user info, query)."""
    host = os.environ.get("DATABRICKS_HOST", "").strip()
    if not host:
        return "host"
    parts = urlsplit(host if "//" in host else f"https://{host}")
    return parts.hostname or "host"
