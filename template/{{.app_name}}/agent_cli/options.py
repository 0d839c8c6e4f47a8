"""Command-line options that several `uv run` commands share, defined once."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent_cli.project import ENV_FILE


def add_seconds(parser: argparse.ArgumentParser, flag: str, default: float, waits_for: str) -> None:
    """A `--...timeout SECONDS` option: how long to wait for `waits_for`."""
    parser.add_argument(
        flag,
        metavar="SECONDS",
        type=float,
        default=default,
        help=f"seconds to wait for {waits_for} (default: {default:g})",
    )


def add_env_file(
    parser: argparse.ArgumentParser, used_as: str, default: Path | None = ENV_FILE
) -> None:
    """The `--env-file PATH` option; `used_as` says what the command does with the file."""
    where = "the project's .env" if default == ENV_FILE else "AGENT_ENV_FILE, else .env"
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        type=Path,
        default=default,
        help=f"{used_as} (default: {where})",
    )
