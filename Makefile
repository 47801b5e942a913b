# The template repository's own checks. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# uv from PATH, else where `python3 -m pip install --user uv` puts it. Exported for tests/conftest.py.
UV := $(or $(shell command -v uv 2>/dev/null),$(HOME)/.local/bin/uv)
export UV
# Services the variant tests need (scripts/services.sh): all brokers' for every variant, else
# those of variant V's broker (its name's first word, see variants.yml).
SERVICES ?= postgres $(if $(V),$(or $(filter kafka rabbitmq nats,$(firstword $(subst -, ,$(V)))),redis),redis kafka rabbitmq nats)
LINT_PATHS := tests extensions scripts
# The benchmark at the size tests/test_bench.py runs it at (RabbitMQ and NATS: relay and worker only).
TINY_BENCH := --events 200 --repeats 1 --history 1000 --backlog 1000 --latency-s 2
# Test processes side by side (pytest-xdist): variants spend most of their time waiting on servers.
JOBS ?= 2
PYTEST_PARALLEL := -n $(JOBS) --dist worksteal

# Run the rest of a recipe line with the services' URLs (TEST_DATABASE_URL, ...) exported; the
# Kafka broker that scripts/services.sh started for this line (KAFKA_RUN_PORT) is stopped after it.
stop_run_kafka = [[ -z $${KAFKA_RUN_PORT:-} ]] || KAFKA_PORT=$$KAFKA_RUN_PORT scripts/kafka.sh stop
with_services = services_env=$$(scripts/services.sh $(SERVICES)) && eval "$$services_env" && \
  trap '$(stop_run_kafka)' EXIT &&
# Progress reaches a log as it happens (a CI run cut off at its time limit keeps what it printed).
export PYTHONUNBUFFERED := 1
# Variants whose suites start their own servers with Testcontainers (`servers: testcontainers` in
# variants.yml); those of them this run tests need a Docker engine and the local images.
CONTAINER_VARIANTS := $(shell awk '/^  - name:/ {name = $$3} /^    servers: testcontainers/ {print name}' variants.yml)
IMAGES_NEEDED := $(if $(V),$(filter $(V),$(CONTAINER_VARIANTS)),$(CONTAINER_VARIANTS))
# Run the rest of a recipe line with a Docker engine up and the images' names (TEST_*_IMAGE) exported.
with_images = $(if $(IMAGES_NEEDED),images_env=$$(scripts/docker.sh && scripts/images.sh) && eval "$$images_env" &&)

ifneq ($(filter test-variant render,$(MAKECMDGOALS)),)
  $(if $(V),,$(error set V to a name from variants.yml, e.g. make $(MAKECMDGOALS) V=arq-default))
endif
ifneq ($(filter render,$(MAKECMDGOALS)),)
  $(if $(DEST),,$(error set DEST to a new directory, e.g. make render V=$(V) DEST=../orders-service))
endif

.PHONY: help services images sync lint check test test-variant test-update render chaos bench

help: ## List the targets
	@echo "usage: make TARGET   (variants are named in variants.yml)"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	python3 -m pip install --user uv

services: ## Start PostgreSQL, Redis, RabbitMQ and NATS unless running, and a Kafka broker of its own; print their URLs
	scripts/services.sh $(SERVICES)

images: ## Start Docker unless it answers, build the Testcontainers images; print their names
	scripts/docker.sh
	scripts/images.sh

sync: | $(UV) ## Install the test tooling into .venv (uv sync)
	$(UV) sync

lint: sync ## ruff check and ruff format --check, then mypy, on tests/, extensions/ and scripts/
	$(UV) run --no-sync ruff check $(LINT_PATHS)
	$(UV) run --no-sync ruff format --check $(LINT_PATHS)
	$(UV) run --no-sync mypy $(LINT_PATHS)

check: lint ## Lint, question and render tests, and the benchmark at a tiny size (private servers)
	$(UV) run --no-sync pytest $(PYTEST_PARALLEL) -m "not variant and not update and not chaos and not bench"
	$(UV) run --no-sync python scripts/bench.py --broker arq kafka $(TINY_BENCH)
	$(UV) run --no-sync python scripts/bench.py --broker nats rabbitmq $(TINY_BENCH) --only relay worker

test: $(UV) lint ## All of it, as CI runs it: lint, question, render, variant and chaos tests
	$(with_services) $(with_images) $(UV) run --no-sync pytest $(PYTEST_PARALLEL)

test-variant: $(UV) sync ## Render and variant tests of one variant: V=arq-default
	$(with_services) $(with_images) $(UV) run --no-sync pytest --variant "$(V)" tests/test_render.py tests/test_variants.py

test-update: $(UV) sync ## copier update from the previous release, and adding a contract
	$(with_services) $(UV) run --no-sync pytest -m update tests/test_update.py tests/test_docs.py

render: sync ## Render one variant into a new directory: V=arq-default DEST=../orders-service
	$(UV) run --no-sync python tests/conftest.py "$(V)" "$(DEST)"

chaos: sync ## Kill, stop and cut a variant's processes and servers under load: V=arq-default N=10000
	$(UV) run --no-sync python scripts/chaos.py --variant "$(or $(V),arq-default)" --events "$(or $(N),10000)"

bench: sync ## Relay (and 2 peer libraries' relays), worker, latency, API vs the raw client, per broker: N=10000 R=3
	$(UV) run --no-sync python scripts/bench.py --events "$(or $(N),10000)" --repeats "$(or $(R),3)"
