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
## Two pytest workers per core: most of the time goes to the generated projects' own suites,
## which spend about half of it waiting (timeouts, slow fake LLMs, shutdowns) rather than
## computing, so two of them share a core well. Each worker starts with its share of those
## suites and of the other long tests (tests/conftest.py), so that none is left for the end.
## At most 8: there are ten long tests, and more workers would mostly share the same cores.
TEST_WORKERS ?= $(shell n=$$(( 2 * $$(nproc) )); echo $$(( n < 8 ? n : 8 )))
test: prereqs
	uv run pytest -n $(TEST_WORKERS) --dist worksteal

lint: prereqs
	uv run ruff check . && uv run ruff format --check .
	cd tests/bundle_init && test -z "$$(gofmt -l .)" && go vet ./...

## The generated agents side by side with a minimal relay (bench/README.md); not part of `make
## test`. About 20 minutes; `make bench BENCH_ARGS=--quick` for a few minutes.
bench: prereqs
	uv run --group bench python bench/run.py $(BENCH_ARGS)

## Soak test of a generated agent (bench/soak.py): 6,000 mixed requests at concurrency 128 with
## LLM faults; fails on an unexpected error, a leak or memory growth >= 10 %. Not part of `make
## test`; about 10 minutes on 2 cores. `make soak SOAK_ARGS="--requests 1000"` for a short run.
.PHONY: soak
soak: prereqs
	uv run python bench/soak.py $(SOAK_ARGS)
