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
