"""In-place .env updates: only the value changes; comments, order and other keys stay."""

from __future__ import annotations

from pathlib import Path

from dotenv import dotenv_values

from agent_cli.env_file import EnvFile

ORIGINAL = """\
# Settings for local runs.
export DATABRICKS_CONFIG_PROFILE=dev  # my profile

SERVING_ENDPOINT='my-endpoint'
# MLFLOW_EXPERIMENT_ID=<the experiment id quickstart prints>
LOG_LEVEL=DEBUG
MULTI="line one
line two"
"""


def load(tmp_path: Path, text: str = ORIGINAL) -> EnvFile:
    path = tmp_path / ".env"
    path.write_text(text)
    return EnvFile.load(path)


def test_reads_values_as_load_dotenv_does(tmp_path: Path) -> None:
    env = load(tmp_path)
    expected = dotenv_values(tmp_path / ".env")
    for key in ("DATABRICKS_CONFIG_PROFILE", "SERVING_ENDPOINT", "LOG_LEVEL", "MULTI"):
        assert env.get(key) == expected[key]
    assert env.get("MLFLOW_EXPERIMENT_ID") is None  # commented out


def test_updates_keep_everything_else(tmp_path: Path) -> None:
    env = load(tmp_path)
    env.set("DATABRICKS_CONFIG_PROFILE", "prod")
    env.set("SERVING_ENDPOINT", "other endpoint")
    env.set("MLFLOW_EXPERIMENT_ID", "123")  # takes the place of the commented-out line
    env.set("MULTI", "single")
    env.set("NEW_KEY", "value")
    assert env.save()
    expected = """\
# Settings for local runs.
export DATABRICKS_CONFIG_PROFILE=prod  # my profile

SERVING_ENDPOINT="other endpoint"
MLFLOW_EXPERIMENT_ID=123
LOG_LEVEL=DEBUG
MULTI=single
NEW_KEY=value
"""
    assert (tmp_path / ".env").read_text() == expected
    assert dotenv_values(tmp_path / ".env")["SERVING_ENDPOINT"] == "other endpoint"


def test_unchanged_file_is_not_written(tmp_path: Path) -> None:
    env = load(tmp_path)
    written = (tmp_path / ".env").stat().st_mtime_ns
    env.set("LOG_LEVEL", "DEBUG")
    env.set("SERVING_ENDPOINT", "my-endpoint")  # same value, quoted differently in the file
    assert not env.changed
    assert not env.save()
    assert (tmp_path / ".env").read_text() == ORIGINAL
    assert (tmp_path / ".env").stat().st_mtime_ns == written


def test_comment_out_keeps_the_value_for_reference(tmp_path: Path) -> None:
    env = load(tmp_path)
    env.comment_out("LOG_LEVEL", "not needed")
    assert env.get("LOG_LEVEL") is None
    assert "# LOG_LEVEL=DEBUG  (not needed)\n" in env.text


def test_values_that_need_quotes_round_trip(tmp_path: Path) -> None:
    env = load(tmp_path, "")
    tricky = 'a "quoted" value # not a comment \\ with a backslash'
    env.set("TRICKY", tricky)
    env.set("URI", "databricks://my-profile")
    env.save()
    assert dotenv_values(tmp_path / ".env") == {"TRICKY": tricky, "URI": "databricks://my-profile"}
    assert "URI=databricks://my-profile\n" in (tmp_path / ".env").read_text()


def test_new_file_starts_from_the_template_and_is_private(tmp_path: Path) -> None:
    template = tmp_path / ".env.example"
    template.write_text("# Example\nDATABRICKS_CONFIG_PROFILE=DEFAULT\n")
    env = EnvFile.load(tmp_path / ".env", template=template)
    assert not env.exists and env.changed
    env.set("DATABRICKS_CONFIG_PROFILE", "dev")
    env.save()
    assert (tmp_path / ".env").read_text() == "# Example\nDATABRICKS_CONFIG_PROFILE=dev\n"
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    assert template.read_text() == "# Example\nDATABRICKS_CONFIG_PROFILE=DEFAULT\n"
