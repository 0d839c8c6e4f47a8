"""Authentication to the Databricks workspace through databricks-sdk, with bounded waits.

Profiles come from the Databricks config file (`databricks auth login` writes it). Every
client here is built with short retry and HTTP timeouts: with the SDK's defaults an
unreachable host blocks for 300 s, first while building the client, then on each call.
"""

from __future__ import annotations

import configparser
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import DatabricksError, PermissionDenied, Unauthenticated

from agent_cli import console
from agent_cli.console import CliError

DEFAULT_TIMEOUT_SECONDS = 10.0
SETTINGS_SECTION = "__settings__"  # not a profile: the config file's own settings


def config_file() -> Path:
    return Path(os.environ.get("DATABRICKS_CONFIG_FILE") or "~/.databrickscfg").expanduser()


@dataclass(frozen=True)
class Profile:
    name: str
    host: str | None


def list_profiles() -> list[Profile]:
    """The profiles in the config file, in file order (DEFAULT first when it has settings)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config_file(), encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {config_file()}: {exc}") from None
    profiles = [Profile("DEFAULT", parser.defaults().get("host"))] if parser.defaults() else []
    profiles += [
        Profile(name, parser.get(name, "host", fallback=None))
        for name in parser.sections()
        if name != SETTINGS_SECTION
    ]
    return profiles


@dataclass(frozen=True)
class Auth:
    """How to reach the workspace: a config profile, or a host with credentials from elsewhere."""

    profile: str | None = None
    host: str | None = None

    def __str__(self) -> str:
        if self.profile:
            return f"profile {self.profile}"
        return f"host {self.host}" if self.host else "the default Databricks configuration"

    @property
    def login_command(self) -> str:
        if self.profile:
            return f"databricks auth login --profile {self.profile}"
        return f"databricks auth login --host {self.host or '<workspace-url>'}"


@dataclass(frozen=True)
class Workspace:
    client: WorkspaceClient
    host: str
    user_name: str


def build_config(auth: Auth, timeout: float) -> Config:
    """A Config for `auth` whose calls give up after about `timeout` seconds."""
    # The SDK logs a warning when the host does not answer; the error below says it better.
    logging.getLogger("databricks.sdk").setLevel(logging.ERROR)
    seconds = max(1, round(timeout))
    try:
        return Config(
            profile=auth.profile,
            host=auth.host,
            retry_timeout_seconds=seconds,
            http_timeout_seconds=seconds,
        )
    except ValueError as exc:
        raise _auth_error(auth, str(exc)) from None


def short_error(error: object) -> str:
    """An SDK error without the configuration dump the SDK appends ("... Config: host=...")."""
    return str(error).split(" Config: ", 1)[0].rstrip(". ")


def _auth_error(auth: Auth, detail: str) -> CliError:
    if auth.profile and "has no " in detail and "profile configured" in detail:
        names = ", ".join(p.name for p in list_profiles()) or "none"
        return CliError(
            f"there is no profile {auth.profile!r} in {config_file()} (profiles: {names})",
            hint=f"create it with `{auth.login_command} --host <workspace-url>`, "
            "or pass --profile with one of the profiles above",
        )
    return CliError(
        f"cannot authenticate with {auth}: {short_error(detail)}",
        hint=f"log in with `{auth.login_command}`",
    )


def unreachable(auth: Auth, host: str, timeout: float, detail: object) -> CliError:
    return CliError(
        f"{host} ({auth}) did not answer within {timeout:g} s: {detail}",
        hint="check the workspace URL and your network (VPN, proxy); "
        "--timeout allows a slower answer",
    )


def connect(auth: Auth, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Workspace:
    """A client for `auth`, checked with a real call (the current user)."""
    config = build_config(auth, timeout)
    client = WorkspaceClient(config=config)
    host = config.host or str(auth.host)
    try:
        me = client.current_user.me()
    except (Unauthenticated, PermissionDenied) as exc:
        raise CliError(
            f"{host} rejected the credentials of {auth}: {short_error(exc)}",
            hint=f"log in again with `{auth.login_command}`",
        ) from None
    except DatabricksError as exc:
        raise CliError(f"{host} answered an error for {auth}: {short_error(exc)}") from None
    except OSError as exc:  # TimeoutError, requests' ConnectionError (after DatabricksError)
        raise unreachable(auth, host, timeout, exc) from None
    except ValueError as exc:  # credentials could not be obtained (e.g. an expired login)
        raise _auth_error(auth, str(exc)) from None
    user_name = me.user_name or me.display_name or me.id or "unknown user"
    return Workspace(client, host.rstrip("/"), user_name)


def bearer_headers(auth: Auth, timeout: float) -> dict[str, str]:
    """Authorization headers for `auth` (the token is registered so it is never printed)."""
    config = build_config(auth, timeout)
    try:
        headers = config.authenticate()
    except (ValueError, DatabricksError) as exc:  # DatabricksError before its base, OSError
        raise _auth_error(auth, str(exc)) from None
    except OSError as exc:
        raise unreachable(auth, config.host or str(auth.host), timeout, exc) from None
    for value in headers.values():
        console.add_secret(value)
        console.add_secret(value.removeprefix("Bearer "))
    return headers
