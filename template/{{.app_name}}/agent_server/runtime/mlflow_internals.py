"""Every use of mlflow's private API in this project, behind one version check.

The agent server of mlflow (mlflow.genai.agent_server) offers no public way to wrap the
registered @invoke and @stream handlers, so handler_adapter.py's versions replace them where the
server keeps them (`server._invoke_function`, `server._stream_function`, in mlflow's
mlflow/genai/agent_server/server.py), and start_server.py's shut-down steps run inside the
lifespan that AgentServer sets on its app (`app.router.lifespan_context`), and tracing to
Databricks reuses the workspace configuration mlflow resolves (`cache_databricks_host_creds`).
These may change in
any mlflow release: `check_mlflow()` runs at start-up and stops the server with a clear error
on a version outside the range this was checked on, mlflow 3.16 to 3.18 (the project pins
mlflow below 4).
"""

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version
from typing import Any

from mlflow.genai.agent_server import server as mlflow_server
from packaging.version import Version

logger = logging.getLogger(__name__)

# The mlflow versions whose agent server keeps its handlers as used here: [lowest, beyond).
SUPPORTED_MLFLOW = (Version("3.16"), Version("3.19"))


class UnsupportedMlflowError(RuntimeError):
    """The installed mlflow is outside the versions this server was checked with."""


def check_mlflow(installed: str | None = None) -> None:
    """Raise UnsupportedMlflowError unless mlflow (`installed`, default: the installed one) is
    in SUPPORTED_MLFLOW and its agent server keeps the handlers where this module expects."""
    found = Version(installed or version("mlflow"))
    lowest, beyond = SUPPORTED_MLFLOW
    if not lowest <= found < beyond:
        raise UnsupportedMlflowError(
            f"mlflow {found} is installed; this agent server supports mlflow >= {lowest}, "
            f"< {beyond} (it adapts mlflow's agent server handlers through its internals). "
            "Pin mlflow in that range in pyproject.toml and run `uv sync`."
        )
    if not hasattr(mlflow_server, "_invoke_function") or not hasattr(
        mlflow_server, "_stream_function"
    ):
        raise UnsupportedMlflowError(
            f"mlflow {found}'s agent server keeps its handlers elsewhere; pin mlflow >= "
            f"{lowest}, < {beyond} in pyproject.toml and run `uv sync`."
        )


def replace_registered_handlers(
    adapt_invoke: Callable[[Any], Any], adapt_stream: Callable[[Any], Any]
) -> None:
    """Replace the registered @invoke and @stream functions with `adapt_*(function)`."""
    if (invoke := mlflow_server._invoke_function) is not None:
        mlflow_server._invoke_function = adapt_invoke(invoke)
    if (stream := mlflow_server._stream_function) is not None:
        mlflow_server._stream_function = adapt_stream(stream)


def run_after_mlflow_shutdown(app: Any, step: Callable[[], Awaitable[None]]) -> None:
    """Run `step` at shut-down, after the lifespan of mlflow's AgentServer on `app` has ended."""
    mlflow_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with mlflow_lifespan(app_) as state:
            yield state
        await step()

    app.router.lifespan_context = lifespan


# How long cache_databricks_host_creds reuses the Databricks configuration mlflow resolved.
HOST_CREDS_SECONDS = 300.0


def cache_databricks_host_creds(ttl: float = HOST_CREDS_SECONDS) -> None:
    """Make mlflow resolve the Databricks configuration once per `ttl` s, not at every call.

    For each call to a Databricks tracking store (two per exported trace: its info, then the
    credentials to upload its spans) mlflow resolves the configuration again with a new
    databricks-sdk WorkspaceClient (mlflow/utils/databricks_utils.py get_databricks_host_creds,
    called by RestStore._call_endpoint and DatabricksArtifactRepository._call_endpoint): the
    environment, the config file and, with OAuth as on Databricks Apps, two HTTP requests to the
    workspace (its /.well-known/databricks-config and OIDC metadata). What it returns names the
    host and how to authenticate; the SDK refreshes OAuth tokens on its own. Reused for `ttl` s,
    which bounds how long a changed config file goes unnoticed. Only for stores built after this.
    """
    from mlflow.store.artifact import databricks_artifact_repo
    from mlflow.tracking._tracking_service import utils as tracking_utils
    from mlflow.utils import databricks_utils

    modules = (databricks_utils, databricks_artifact_repo, tracking_utils)
    resolve = getattr(databricks_utils, "get_databricks_host_creds", None)
    if resolve is None or getattr(resolve, "reused", False):
        return
    if not all(getattr(m, "get_databricks_host_creds", None) is resolve for m in modules):
        logger.info("mlflow resolves Databricks credentials elsewhere: not reused.")
        return
    lock = threading.Lock()
    resolved: dict[str | None, tuple[float, Any]] = {}

    def reused(server_uri: str | None = None) -> Any:
        with lock:
            hit = resolved.get(server_uri)
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        creds = resolve(server_uri)  # a failure is raised, not kept
        with lock:
            resolved[server_uri] = (time.monotonic(), creds)
        return creds

    reused.reused = True  # type: ignore[attr-defined]
    for module in modules:
        module.get_databricks_host_creds = reused  # type: ignore[attr-defined]
