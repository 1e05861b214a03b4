# Marketpay — the commands a developer and CI use. `make help` lists them.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen

.DEFAULT_GOAL := help
.PHONY: help install up down test lint format bench openapi servers

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

install: $(UV) ## install the workspace (Python deps from uv.lock) and Chromium for the browser tests
	$(UV) sync --frozen --all-packages
	bash scripts/ensure-chromium.sh

servers: ## make sure the local PostgreSQL and RabbitMQ are running
	bash scripts/ensure-servers.sh

up: install servers ## start every service with a demo tenant, and print what to try
	bash scripts/up.sh

down: ## stop what `make up` started
	bash scripts/down.sh

test: install servers ## run every test against real PostgreSQL and RabbitMQ
	$(RUN) pytest

lint: install ## ruff (complexity limit included), formatting, mypy --strict everywhere, import contracts
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs/common/common $(foreach s,$(wildcard services/*),$(s)/$(notdir $(s))) scripts bench
	$(RUN) lint-imports

format: install ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: install servers ## benchmarks; figures go to docs/benchmarks.md by hand
	$(RUN) python -m bench

openapi: install ## write docs/openapi/<service>.json from the running code
	$(RUN) python scripts/write_openapi.py
