# Marketpay — the commands a developer and CI use. `make help` lists them.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen

.DEFAULT_GOAL := help
.PHONY: help install up down test lint format bench openapi servers deploy-tools

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

REPLICAS ?= 1
up: install servers ## start every service with a demo tenant (REPLICAS=2: two of each consumer)
	REPLICAS=$(REPLICAS) bash scripts/up.sh

down: ## stop what `make up` started
	bash scripts/down.sh

test: install servers ## run every test against real PostgreSQL and RabbitMQ
	$(RUN) pytest

lint: install deploy-tools ## ruff (complexity limit included), formatting, mypy --strict everywhere, import contracts, the Dockerfile, compose file and k8s manifests
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs/common/common $(foreach s,$(wildcard services/*),$(s)/$(notdir $(s))) scripts bench
	$(RUN) lint-imports
	$(RUN) python scripts/validate_deploy.py

# Compose's own parser validates docker-compose.yml without an engine: the docker compose plugin
# when there is one, else Debian's docker-compose package (installed here, as root).
deploy-tools:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		    --no-install-recommends docker-compose >/dev/null; }; } || \
		{ echo "install docker compose (or Debian's docker-compose) to validate docker-compose.yml" >&2; exit 1; }

format: install ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: install servers ## benchmarks; figures go to docs/benchmarks.md by hand
	bash scripts/pg-stat-statements.sh
	$(RUN) python -m bench

openapi: install ## write docs/openapi/<service>.json from the running code
	$(RUN) python scripts/write_openapi.py
