"""Errors whose message is safe to show to the caller, with the HTTP status that fits them."""

import json
from types import TracebackType

from agent_server.runtime.redaction import redact


class AgentError(Exception):
    """A failure the caller should see as-is, answered with `status_code` instead of a 500.

    `code` names the failure in a streamed error event (`{"type": "error", "code": ...}`).
    """

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        # Messages can quote what a library or the LLM endpoint said: never pass a secret on.
        super().__init__(redact(message))


class InternalError(AgentError):
    """Anything else the handler raised: a bug, answered 500 with the exception's type."""


class ConfigurationError(AgentError):
    """The app is missing a setting (an environment variable or credentials)."""

    status_code = 503
    code = "configuration_error"


class NotMigratedError(AgentError):
    """The Model Serving migration scaffold has not been filled in yet."""

    status_code = 501
    code = "not_migrated"


class UpstreamError(AgentError):
    """The LLM endpoint failed, could not be reached, or sent something unreadable."""

    status_code = 502
    code = "upstream_error"


class UpstreamBusyError(UpstreamError):
    """The LLM endpoint is rate limiting or temporarily unavailable."""

    status_code = 503
    code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    """The LLM endpoint did not answer in time."""

    status_code = 504
    code = "upstream_timeout"


class MemoryUnavailableError(AgentError):
    """The agent's memory (Lakebase, PostgreSQL) could not be reached or did not answer."""

    status_code = 503
    code = "memory_unavailable"


# Modules of the HTTP clients under ChatDatabricks and DatabricksOpenAI: an exception raised in
# them while reading an answer comes from the LLM endpoint's side of the connection.
_CLIENT_MODULES = ("openai.", "httpx.", "httpcore.", "h11.")


def as_agent_error(exc: BaseException) -> AgentError | None:
    """The AgentError for an exception from the LLM client, or None for anything else."""
    if isinstance(exc, AgentError):
        return exc
    error = _openai_error(exc) or _transport_error(exc) or _database_error(exc)
    if error is not None:
        return error
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError) and _raised_in_client(exc):
        # The endpoint streamed a chunk that is not JSON (openai parses each SSE event).
        return UpstreamError(f"The LLM endpoint sent an invalid response: {exc}")
    return None


def public_error(exc: BaseException) -> AgentError:
    """What to tell the caller about any exception: its AgentError, else an InternalError."""
    error = as_agent_error(exc)
    if error is not None:
        return error
    return InternalError(f"The agent failed: {type(exc).__name__}: {exc}")


def _openai_error(exc: BaseException) -> AgentError | None:
    try:
        import openai  # the client under ChatDatabricks and DatabricksOpenAI
    except ImportError:
        return None
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeoutError("The LLM endpoint did not answer in time.")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError(f"Could not reach the LLM endpoint: {exc}")
    if isinstance(exc, openai.APIStatusError):
        error = UpstreamBusyError if exc.status_code in (429, 503) else UpstreamError
        return error(f"The LLM endpoint answered {exc.status_code}: {exc.message}")
    return None


def _transport_error(exc: BaseException) -> AgentError | None:
    """httpx errors raised while a streamed answer is read: openai does not wrap those."""
    try:
        import httpx
    except ImportError:
        return None
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError("The LLM endpoint stopped sending in the middle of its answer.")
    if isinstance(exc, httpx.TransportError):
        return UpstreamError(
            f"The connection to the LLM endpoint broke off: {type(exc).__name__}: {exc}"
        )
    return None


def _database_error(exc: BaseException) -> AgentError | None:
    """PostgreSQL connection failures of the memory's pools (projects with memory only)."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        return None
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return MemoryUnavailableError(
            f"The agent's memory (Lakebase) is unreachable: {type(exc).__name__}: {exc}"
        )
    return None


def _raised_in_client(exc: BaseException) -> bool:
    traceback: TracebackType | None = exc.__traceback__
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module.startswith(_CLIENT_MODULES):
            return True
        traceback = traceback.tb_next
    return False
