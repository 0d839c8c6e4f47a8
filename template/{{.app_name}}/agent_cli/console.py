"""Messages, prompts and exit codes shared by the project's command-line tools.

An expected failure raises CliError; `guard()` prints its message and hint, without a
traceback, and returns the exit code. Everything printed goes through `redact()`, so a token
that slips into a message (an error text quoting a header, say) never reaches the terminal.
Prompts only happen when stdin is a terminal: elsewhere the caller must have a flag to offer.
"""

import os
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

# Environment variables whose values are secrets: never printed, even inside an error text.
SECRET_ENV_KEYS = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_PASSWORD")
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words

_secrets: set[str] = set()


class CliError(Exception):
    """An expected failure: a message for the user, a hint on what to do, an exit code."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


def add_secret(value: str | None) -> None:
    """Never print `value` (a token the command obtained or was given)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _secrets.add(value)


def redact(text: str) -> str:
    secrets = set(_secrets)
    secrets.update(
        value
        for key in SECRET_ENV_KEYS
        if len(value := os.environ.get(key, "")) >= MIN_SECRET_LENGTH
    )
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def say(message: str = "") -> None:
    print(redact(message), flush=True)


def heading(title: str) -> None:
    say(f"\n{title}")


def ok(message: str) -> None:
    say(f"  ok    {message}")


def note(message: str) -> None:
    say(f"  --    {message}")


def warn(message: str) -> None:
    say(f"  warn  {message}")


def failed(message: str) -> None:
    say(f"  FAIL  {message}")


def error(message: str, hint: str | None = None) -> None:
    print(redact(f"error: {message}"), file=sys.stderr, flush=True)
    if hint:
        print(redact(f"hint: {hint}"), file=sys.stderr, flush=True)


def guard(action: Callable[[], int]) -> int:
    """Run a command's body: expected failures and Ctrl-C become a message and an exit code."""
    try:
        return action()
    except CliError as exc:
        error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        error("cancelled")
        return EXIT_INTERRUPTED


def interactive() -> bool:
    """Whether the user can answer questions: stdin is a terminal."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False


def ask(prompt: str) -> str:
    try:
        return input(redact(prompt)).strip()
    except EOFError:
        raise CliError("no answer (stdin closed)") from None


def confirm(question: str, *, assume_yes: bool, flag: str = "--yes") -> bool:
    """Yes when `assume_yes`; else the user's answer on a terminal; elsewhere a CliError."""
    if assume_yes:
        return True
    if not interactive():
        raise CliError(
            f"{question} needs an answer, and stdin is not a terminal.",
            hint=f"pass {flag} to answer yes without a prompt",
        )
    answer = ask(f"{question} [Y/n] ").lower()
    return answer in ("", "y", "yes")
