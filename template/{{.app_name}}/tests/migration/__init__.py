"""Tests of `uv run migrate`: real agents logged with MLflow, migrated, booted and compared."""
