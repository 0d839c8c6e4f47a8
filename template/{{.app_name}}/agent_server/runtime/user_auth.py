"""The agent's Databricks tools act as the user who asked, not as the app.

On Databricks Apps with user authorization, the platform's proxy forwards the signed-in user's
own token in X-Forwarded-Access-Token, limited to the app's `user_api_scopes` (databricks.yml;
docs: dev-tools/databricks-apps/auth). The managed MCP servers' tools and the sub-agents are
called with a workspace client made from that token for each call, so Unity Catalog applies the
user's permissions. The token is used for the request it came with and never kept.

What still runs as the app's service principal: the LLM endpoint, the MLflow traces, the
agent's memory, and listing the tools once per process (the list is the same for everyone; a
call the user may not make fails with the server's answer, which the LLM reads).

Locally there is no proxy: the tools run with your own credentials (.env, a CLI profile), which
are the user's.
"""

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from mlflow.genai.agent_server import get_request_headers

from agent_server.runtime.errors import AgentError
from agent_server.runtime.identity import TOKEN_HEADER, on_databricks_apps
from agent_server.runtime.workspace import (
    HTTP_TIMEOUT_SECONDS,
    RETRY_TIMEOUT_SECONDS,
    workspace_client,
)


class UserAuthorizationError(AgentError):
    """The request carries no user token to run the tools with."""

    status_code = 401
    code = "user_authorization_missing"


MISSING_TOKEN = (
    "No user token in this request (X-Forwarded-Access-Token): the agent's tools run as the "
    "signed-in user. Enable user authorization for the app (user_api_scopes in databricks.yml) "
    "and call it through its URL."
)


def user_token() -> str | None:
    """The signed-in user's token, from the current request; None locally."""
    if not on_databricks_apps():
        return None
    token = get_request_headers().get(TOKEN_HEADER, "").strip()
    if not token:
        raise UserAuthorizationError(MISSING_TOKEN)
    return token


def user_workspace_client(token: str | None) -> WorkspaceClient:
    """A workspace client that authenticates as the user of `token` (from user_token()); the
    app's own client when there is none (a local run).

    Blocking: building a client looks up the workspace's configuration over HTTP.
    """
    app_client = workspace_client()
    if token is None:
        return app_client
    # A personal access token in the SDK's terms: the client sends it as a bearer token as-is.
    config = Config(
        host=app_client.config.host,
        token=token,
        auth_type="pat",
        retry_timeout_seconds=RETRY_TIMEOUT_SECONDS,
        http_timeout_seconds=HTTP_TIMEOUT_SECONDS,
    )
    return WorkspaceClient(config=config)
