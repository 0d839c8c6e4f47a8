"""Keeps secrets out of what the server writes: log lines and the error messages it answers.

Two nets, because neither alone is enough:
- the values of secret-looking environment variables (DATABRICKS_TOKEN, *_SECRET, ...), whatever
  they look like;
- the shapes of Databricks credentials that are not in the environment: personal access tokens
  (dapi...), OAuth secrets (dose...), bearer tokens and JWTs such as the user token
  that Databricks Apps forwards in the `x-forwarded-access-token` header.

`install_log_redaction()` applies `redact()` to every log record of the process, whichever logger
or handler it goes through (the server's, uvicorn's, mlflow's, the SDK's).
"""

import logging
import os
import re
import threading

REDACTED = "[REDACTED]"

# Environment variables whose values are secrets, by name.
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY)$", re.IGNORECASE)
# Values shorter than this are not treated as secrets: replacing "1" or "no" would mangle logs.
_MIN_SECRET_LENGTH = 8

_CREDENTIAL_SHAPES = re.compile(
    r"\bdapi[0-9A-Za-z_-]{8,}"  # personal access token
    r"|\bdose[0-9A-Za-z_-]{8,}"  # OAuth client secret
    r"|\beyJ[0-9A-Za-z_-]{4,}\.[0-9A-Za-z_-]{4,}\.[0-9A-Za-z_-]*"  # JWT (OAuth, OBO tokens)
    r"|(?<=[Bb]earer )[^\s'\",;]+"  # whatever follows "Bearer "
)

_lock = threading.Lock()
_known_values: tuple[str, ...] | None = None


def secret_values() -> tuple[str, ...]:
    """The values of secret environment variables, longest first (read once, then cached)."""
    global _known_values
    with _lock:
        if _known_values is None:
            values = {
                value
                for name, value in os.environ.items()
                if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LENGTH
            }
            _known_values = tuple(sorted(values, key=len, reverse=True))
        return _known_values


def forget_secret_values() -> None:
    """Read the environment again on next use (after .env is loaded, or in tests)."""
    global _known_values
    with _lock:
        _known_values = None


def redact(text: str) -> str:
    """`text` with every known secret value and credential-shaped string replaced."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return _CREDENTIAL_SHAPES.sub(REDACTED, text)


def install_log_redaction() -> None:
    """Redact every log record created from now on, in this process.

    A record factory rather than a handler filter: it also covers handlers that libraries add
    later (uvicorn configures its own when it starts). A message or traceback with a secret in
    it is formatted here, redacted, and handed on as plain text, so no formatter sees the value.
    """
    base_factory = logging.getLogRecordFactory()
    if getattr(base_factory, "_redacting", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = base_factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the record as it is, logging reports it
            return record
        clean = redact(message)
        if clean != message:
            if record.name == "uvicorn.access" and isinstance(record.args, tuple):
                # uvicorn's access formatter unpacks the arguments (client, method, path, ...).
                record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
            else:
                record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    factory._redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
