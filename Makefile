# One command per chore. `make test` and `make demo` do all set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

# .env, if there is one, read as defaults the way the processes read it: the environment and
# the command line still win over it, and the values it sets are the ones exported below
# (without this, the `?=` defaults here would override .env in every process make starts).
# Plain KEY=value lines (optional double quotes; no spaces or `#` or `$` in the value).
# Except ALLOW_DEV_SECRETS: make's targets always allow the development secrets (below), so
# a copy of .env.example (which says false) still runs; real secrets pass either way.
ENV_FILE ?= .env
$(foreach kv,$(shell sed -nE '/^[[:space:]]*ALLOW_DEV_SECRETS=/d; s/^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=["]?([^" ]*)["]?[[:space:]]*$$/\1?=\2/p' $(ENV_FILE) 2>/dev/null),$(eval $(kv)))

HOTDEAL_PG_PORT ?= 55432
HOTDEAL_REDIS_PORT ?= 56379
HOTDEAL_KAFKA_PORT ?= 59092
export HOTDEAL_PG_PORT HOTDEAL_REDIS_PORT HOTDEAL_KAFKA_PORT

DATABASE_URL ?= postgresql+asyncpg://hotdeal:hotdeal@127.0.0.1:$(HOTDEAL_PG_PORT)/hotdeal
REDIS_URL ?= redis://127.0.0.1:$(HOTDEAL_REDIS_PORT)/0
KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(HOTDEAL_KAFKA_PORT)
export DATABASE_URL REDIS_URL KAFKA_BOOTSTRAP_SERVERS
# CLUSTER=1 (make up / down / status / infra-up / infra-down / infra-status CLUSTER=1): a
# Redis Cluster (scripts/cluster/redis.sh), a 3-broker Kafka (scripts/cluster/kafka.sh) and
# two replicas of each process (devtools/procs.py), the order APIs behind HAProxy on the one
# buyer address ORDER_API_PORT (scripts/ensure-haproxy.sh); Postgres as in single mode. docs/scaling.md
CLUSTER ?=
HOTDEAL_CLUSTER := $(CLUSTER)
HOTDEAL_KAFKA_CLUSTER_PORTS ?= 59192 59193 59194
HOTDEAL_REDIS_CLUSTER_PORT ?= 57001
export HOTDEAL_CLUSTER HOTDEAL_KAFKA_CLUSTER_PORTS HOTDEAL_REDIS_CLUSTER_PORT
comma := ,
space := $(subst ,, )
CLUSTER_KAFKA := $(subst $(space),$(comma),$(strip $(addprefix 127.0.0.1:,$(subst $(comma), ,$(HOTDEAL_KAFKA_CLUSTER_PORTS)))))
CLUSTER_REDIS := redis://127.0.0.1:$(HOTDEAL_REDIS_CLUSTER_PORT)/0
ifeq ($(CLUSTER),1)
REDIS_URL := $(CLUSTER_REDIS)
REDIS_CLUSTER := true
KAFKA_BOOTSTRAP_SERVERS := $(CLUSTER_KAFKA)
export REDIS_CLUSTER
endif
# The make targets run on a developer's machine: the default secrets are allowed here (a
# process started any other way refuses them; see hotdeal_core/settings.py).
ALLOW_DEV_SECRETS ?= true
export ALLOW_DEV_SECRETS

# The test suite has its own database, Redis db and topic prefix, so tests never see demo data.
TEST_ENV := DATABASE_URL=postgresql+asyncpg://hotdeal:hotdeal@127.0.0.1:$(HOTDEAL_PG_PORT)/hotdeal_test \
	REDIS_URL=redis://127.0.0.1:$(HOTDEAL_REDIS_PORT)/1 KAFKA_TOPIC_PREFIX=test.

.PHONY: help venv infra-up infra-down infra-status migrate test test-unit check clean up down status api-docs demo swarm compare bench

help:
	@echo "make demo         the main job: infra + processes + deal + swarm + report"
	@echo "make test         set up everything and run every test tier"
	@echo "make check        ruff + mypy"
	@echo "make infra-up / infra-down / infra-status   local Postgres, Redis, Kafka"
	@echo "make migrate      migrate the app database"
	@echo "make up / down    start / stop the order API, stock worker and reconciler"
	@echo "make up CLUSTER=1 the same with a Redis Cluster, 3 Kafka brokers, 2 of each process behind HAProxy"
	@echo "make test-cluster / test-cluster-e2e   the Redis Cluster tier / the cluster swarms under faults (CI runs both)"
	@echo "make test-cluster-e2e   cluster mode while a Kafka broker, then a Redis master, is killed"
	@echo "make api-docs     regenerate docs/api (OpenAPI, AsyncAPI)"
	@echo "make bench        wrk: trivial endpoint, orders, webhook, sold-out refusals (BENCH_ARGS=...)"
	@echo "make chaos        faults under load: each component killed in turn (SHORT=1: the CI version)"

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

infra-up: venv
	scripts/infra.sh up
infra-down:
	scripts/infra.sh down
infra-status:
	scripts/infra.sh status

migrate: venv infra-up
	$(PY) -m hotdeal_core.db.migrate

test: venv infra-up
	scripts/ensure-prometheus.sh
	$(TEST_ENV) $(PY) -m devtools.testenv
	$(TEST_ENV) $(PY) -m pytest

test-unit: venv
	$(PY) -m pytest -m unit

check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

# The three processes in the background (logs and pids in .run/); `make down` stops them.
up: venv infra-up migrate
	@if [ "$(CLUSTER)" = 1 ]; then scripts/ensure-haproxy.sh; fi
	$(PY) -m devtools.procs up
down:
	@test -x $(PY) && $(PY) -m devtools.procs down || true
status: venv
	@scripts/infra.sh status
	@$(PY) -m devtools.procs status

api-docs: venv
	$(PY) -m devtools.apidocs

clean: down infra-down
	rm -rf .infra .run reports

# Load swarms against the app database (reports in reports/). `make swarm MODE=db USERS=200`.
MODE ?= redis
USERS ?= 100
DURATION ?= 30s
SHAPE ?= constant
STOCK ?= 1000
LIMIT ?= 1
PROCESSES ?= 1
SWARM_ARGS = --users $(USERS) --duration $(DURATION) --shape $(SHAPE) --stock $(STOCK) \
	--limit $(LIMIT) --processes $(PROCESSES)
SWARM_VARS = USERS=$(USERS) DURATION=$(DURATION) SHAPE=$(SHAPE) STOCK=$(STOCK) LIMIT=$(LIMIT) \
	PROCESSES=$(PROCESSES)

# The main job: infra (if not running) + processes + a hot deal + a swarm + the report.
demo: venv
	$(PY) -m devtools.demo --command "make demo"

# One swarm in one stock mode; restarts the processes in that mode and leaves them running.
swarm: venv infra-up
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m devtools.swarm --mode $(MODE) $(SWARM_ARGS) \
		--command "make swarm MODE=$(MODE) $(SWARM_VARS)"

# Redis vs Postgres stock under identical load, plus the trivial-endpoint and sold-out references.
compare: venv infra-up
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m devtools.compare $(SWARM_ARGS) --command "make compare $(SWARM_VARS)"

# Plain-HTTP benchmark with wrk (installed by scripts/ensure-wrk.sh): the trivial endpoint,
# POST /orders, the payment webhook and sold-out refusals side by side; starts and stops its
# own API on a free port. `make bench BENCH_ARGS="--server uvicorn,granian --workers 1,2"`.
BENCH_ARGS ?=
bench: venv infra-up
	scripts/ensure-wrk.sh
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m benchmarks.http $(BENCH_ARGS)

# Cluster mode under failure (tests/cluster): two of each process on the 3-broker Kafka and
# the tests' own Redis Cluster (REDIS_CLUSTER_TEST_PORT, as `make test-cluster`), started if
# needed; a swarm while a Kafka broker is killed, another while the deal's Redis master is.
# The test database and topic prefixes, as `make test`.
.PHONY: test-cluster-e2e
test-cluster-e2e: venv
	HOTDEAL_CLUSTER=1 HOTDEAL_REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_TEST_PORT) scripts/infra.sh up
	scripts/ensure-haproxy.sh
	$(TEST_CLUSTER_ENV) KAFKA_BOOTSTRAP_SERVERS=$(CLUSTER_KAFKA) $(PY) -m devtools.testenv
	$(TEST_CLUSTER_ENV) KAFKA_BOOTSTRAP_SERVERS=$(CLUSTER_KAFKA) $(PY) -m pytest tests/cluster

# The Redis Cluster alone (scripts/cluster/redis.sh; ports HOTDEAL_REDIS_CLUSTER_PORT..+5).
.PHONY: redis-cluster-up redis-cluster-down redis-cluster-status test-cluster
redis-cluster-up:
	scripts/cluster/redis.sh up
redis-cluster-down:
	scripts/cluster/redis.sh down
redis-cluster-status:
	scripts/cluster/redis.sh status

# The stock store's contract, the order use cases, lost-write recovery and a master killed
# mid-sale, against a Redis Cluster of the tests' own (ports 57101-57106, emptied first:
# never the app's cluster of `make up CLUSTER=1`), with replica acks (WAIT) on.
REDIS_CLUSTER_TEST_PORT ?= 57101
export REDIS_CLUSTER_TEST_PORT  # scripts/infra.sh reserves its ports too
TEST_CLUSTER_ENV := $(TEST_ENV) REDIS_URL=redis://127.0.0.1:$(REDIS_CLUSTER_TEST_PORT)/0 \
	REDIS_CLUSTER=true HOTDEAL_REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_TEST_PORT)
test-cluster: venv infra-up
	HOTDEAL_REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_TEST_PORT) scripts/cluster/redis.sh up
	$(TEST_CLUSTER_ENV) $(PY) -m devtools.testenv
	$(TEST_CLUSTER_ENV) $(PY) -m pytest tests/integration/test_stock_contract.py \
		tests/integration/test_orders_usecases.py tests/integration/test_order_edges.py \
		tests/integration/test_lost_writes.py tests/integration/test_redis_failover.py

# Faults under load (devtools/chaos): a steady swarm of retrying buyers while each component
# is killed and restarted in turn, then every promise checked; report in reports/chaos-*/.
# Its own Postgres, Redis and Kafka (other ports, .infra-chaos/), stopped at the end.
# `make chaos SHORT=1`: small load, short holds (the version `make test` runs).
SHORT ?=
.PHONY: chaos
chaos: venv
	$(PY) -m devtools.chaos $(if $(SHORT),--short) --command "make chaos$(if $(SHORT), SHORT=1)"

# The runtime image's lock files (requirements/*.lock, installed by the Dockerfile), refreshed
# from pyproject.toml in a fresh venv; commit them.
.PHONY: lock
lock:
	scripts/lock-requirements.sh
