"""Errors whose message is safe to show to the caller, with the HTTP status that fits them."""


class AgentError(Exception):
    """A failure the caller should see as-is, answered with `status_code` instead of a 500."""

    status_code = 500


class ConfigurationError(AgentError):
    """The app is missing a setting (an environment variable or credentials)."""

    status_code = 503


class NotMigratedError(AgentError):
    """The Model Serving migration scaffold has not been filled in yet."""

    status_code = 501


class UpstreamError(AgentError):
    """The LLM endpoint failed or could not be reached."""

    status_code = 502


class UpstreamBusyError(UpstreamError):
    """The LLM endpoint is rate limiting or temporarily unavailable."""

    status_code = 503


class UpstreamTimeoutError(UpstreamError):
    """The LLM endpoint did not answer in time."""

    status_code = 504


def as_agent_error(exc: BaseException) -> AgentError | None:
    """The AgentError for an exception from the LLM client, or None for anything else."""
    if isinstance(exc, AgentError):
        return exc
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
