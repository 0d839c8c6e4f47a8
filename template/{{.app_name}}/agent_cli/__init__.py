"""Command-line tools of the project, run with `uv run <name>` (see [project.scripts])."""
