# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: prereqs demo test lint bench

prereqs:
	@./scripts/install-prereqs.sh

## Render the template with its defaults, start the agent (against the fake workspace unless a
## Databricks profile is configured) and stream one answer to the terminal.
demo: prereqs
	uv run --quiet python scripts/demo.py

## The whole test suite: the offline bundle init, every prompt combination, the generated agents.
test: prereqs
	uv run pytest

lint: prereqs
	uv run ruff check . && uv run ruff format --check .
	cd tests/bundle_init && test -z "$$(gofmt -l .)" && go vet ./...
