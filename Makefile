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

# The services' default ports, from the scripts' one list (its `: "${NAME:=value}"` lines).
$(foreach kv,$(shell sed -nE 's/^: "\$$\{([A-Z_]+):=([^}]*)\}"$$/\1?=\2/p' \
	$(dir $(lastword $(MAKEFILE_LIST)))scripts/lib/ports.sh),$(eval $(kv)))
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

.PHONY: help venv infra-up infra-down infra-status migrate test test-unit test-tooling check clean up down status api-docs demo swarm compare bench bench-fairness

help: ## this list (every target; `make <target>`)
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z][a-zA-Z0-9_.-]*:[^=]*## / \
		{printf "make %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(VENV)/.installed ## the virtualenv (.venv) with the project and its dev tools
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

infra-up: venv ## start local Postgres, Redis, Kafka (CLUSTER=1: the cluster set)
	scripts/infra.sh up
infra-down: ## stop them
	scripts/infra.sh down
infra-status: ## what runs, where
	scripts/infra.sh status

migrate: venv infra-up ## migrate the app database
	$(PY) -m hotdeal_core.db.migrate

test: venv infra-up ## set up everything and run every test tier (CI runs it)
	scripts/ensure-prometheus.sh
	$(TEST_ENV) $(PY) -m devtools.testenv
	$(TEST_ENV) $(PY) -m pytest

test-unit: venv ## the unit tier only: the product's code on fakes (no services, seconds)
	$(PY) -m pytest tests/unit

test-tooling: venv ## the tooling tier only: dev and load tools, benchmarks, compose, docs (no services)
	$(PY) -m pytest tests/tooling

check: venv ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

# The three processes in the background (logs and pids in .run/); `make down` stops them.
up: venv infra-up migrate ## start the order API, stock worker and reconciler (CLUSTER=1: two of each behind HAProxy)
	@if [ "$(CLUSTER)" = 1 ]; then scripts/ensure-haproxy.sh; fi
	$(PY) -m devtools.procs up
down: ## stop them
	@test -x $(PY) && $(PY) -m devtools.procs down || true
status: venv ## the services and processes
	@scripts/infra.sh status
	@$(PY) -m devtools.procs status

api-docs: venv ## regenerate docs/api (OpenAPI, AsyncAPI)
	$(PY) -m devtools.apidocs

clean: down infra-down ## stop everything, delete .infra, .run, reports
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
demo: venv ## the main job: infra + processes + deal + swarm + report
	$(PY) -m devtools.demo --command "make demo"

# One swarm in one stock mode; restarts the processes in that mode and leaves them running.
swarm: venv infra-up ## one locust swarm in one stock mode (MODE=redis|db USERS= DURATION= ...)
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m devtools.swarm --mode $(MODE) $(SWARM_ARGS) \
		--command "make swarm MODE=$(MODE) $(SWARM_VARS)" $(if $(RESULT),--result $(RESULT))

# Redis vs Postgres stock under identical load, plus the trivial-endpoint and sold-out references.
# RESULT=docs/scenarios/results/<name>.json (also load-order-overload): a small committed result.
compare: venv infra-up ## Redis vs Postgres stock under identical load, with references
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m devtools.compare $(SWARM_ARGS) --command "make compare $(SWARM_VARS)" \
		$(if $(RESULT),--result $(RESULT))

# The seed scenario's load under its own name (docs/scenarios/deal-order-latency.md): MAX_VUS
# virtual users ordering as NUM_USERS distinct buyers, stock in Postgres then in Redis, side
# by side (`make compare` with those two knobs). `make load-order-overload MAX_VUS=100 NUM_USERS=100`.
MAX_VUS ?= 100
NUM_USERS ?= 100
.PHONY: load-order-overload
load-order-overload: venv infra-up ## the seed scenario: MAX_VUS= users as NUM_USERS= buyers, DB vs Redis
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m devtools.compare --users $(MAX_VUS) --buyers $(NUM_USERS) --duration $(DURATION) \
		--stock $(STOCK) --limit $(LIMIT) \
		--command "make load-order-overload MAX_VUS=$(MAX_VUS) NUM_USERS=$(NUM_USERS)" \
		$(if $(RESULT),--result $(RESULT))

# Plain-HTTP benchmark with wrk (installed by scripts/ensure-wrk.sh): the trivial endpoint,
# POST /orders, the payment webhook and sold-out refusals side by side; starts and stops its
# own API on a free port. `make bench BENCH_ARGS="--server uvicorn,granian --workers 1,2"`.
BENCH_ARGS ?=
bench: venv infra-up ## wrk: trivial endpoint, orders, webhook, sold-out refusals (BENCH_ARGS=...)
	scripts/ensure-wrk.sh
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m benchmarks.http $(BENCH_ARGS)

# The fairness of a deal's opening (docs/scenarios/deal-opening-fairness.md): scripts vs
# people, forged / expired / missing tokens, identity's cost, people under a flood, 10,000
# connections at once; its own API on a free port; figures in docs/scenarios/results/.
# `make bench-fairness FAIRNESS_ARGS="--runs 5 --window 3 --label after"`.
FAIRNESS_ARGS ?=
bench-fairness: venv infra-up ## a deal opening: scripts vs people, tokens, floods, bursts (FAIRNESS_ARGS=...)
	scripts/ensure-wrk.sh
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m benchmarks.fairness $(FAIRNESS_ARGS)

# Cluster mode under failure (tests/cluster): two of each process on the 3-broker Kafka and
# the tests' own Redis Cluster (REDIS_CLUSTER_TEST_PORT, as `make test-cluster`), started if
# needed; a swarm while a Kafka broker is killed, another while the deal's Redis master is.
# The test database and topic prefixes, as `make test`.
.PHONY: test-cluster-e2e
test-cluster-e2e: venv ## cluster swarms while a Kafka broker, then a Redis master, is killed (CI)
	HOTDEAL_CLUSTER=1 HOTDEAL_REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_TEST_PORT) scripts/infra.sh up
	scripts/ensure-haproxy.sh
	$(TEST_CLUSTER_ENV) KAFKA_BOOTSTRAP_SERVERS=$(CLUSTER_KAFKA) $(PY) -m devtools.testenv
	$(TEST_CLUSTER_ENV) KAFKA_BOOTSTRAP_SERVERS=$(CLUSTER_KAFKA) $(PY) -m pytest tests/cluster

# The Redis Cluster alone (scripts/cluster/redis.sh; ports HOTDEAL_REDIS_CLUSTER_PORT..+8).
.PHONY: redis-cluster-up redis-cluster-down redis-cluster-status test-cluster
redis-cluster-up: ## the local Redis Cluster alone
	scripts/cluster/redis.sh up
redis-cluster-down: ## stop it and delete its data
	scripts/cluster/redis.sh down
redis-cluster-status: ## its nodes
	scripts/cluster/redis.sh status

# The stock store's contract, the order use cases, lost-write recovery and a master killed
# mid-sale, against a Redis Cluster of the tests' own (REDIS_CLUSTER_TEST_PORT and the eight
# after it, emptied first: never the app's cluster of `make up CLUSTER=1`), with replica acks
# (WAIT) on.
TEST_CLUSTER_ENV := $(TEST_ENV) REDIS_URL=redis://127.0.0.1:$(REDIS_CLUSTER_TEST_PORT)/0 \
	REDIS_CLUSTER=true HOTDEAL_REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_TEST_PORT)
test-cluster: venv infra-up ## the Redis Cluster tier (CI runs it)
	HOTDEAL_REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_TEST_PORT) scripts/cluster/redis.sh up
	$(TEST_CLUSTER_ENV) $(PY) -m devtools.testenv
	$(TEST_CLUSTER_ENV) $(PY) -m pytest tests/integration/test_stock_contract.py \
		tests/integration/test_orders_usecases.py tests/integration/test_order_edges.py \
		tests/integration/test_lost_writes.py tests/integration/test_redis_failover.py

# Faults under load (devtools/chaos): a steady swarm of retrying buyers while each component
# is killed and restarted in turn, then every promise checked; report in reports/chaos-*/.
# Its own Postgres, Redis and Kafka (other ports, .infra-chaos/), stopped at the end.
# `make chaos SHORT=1`: small load, short holds (the version `make test` runs).
# `make chaos CLUSTER=1`: the cluster stack (ports 26201.., 29192.., 28200.., under
# .infra-chaos-cluster/; Postgres shared) and its nine faults in about 80 s.
SHORT ?=
.PHONY: chaos
chaos: venv ## faults under load: each component killed in turn (SHORT=1: the CI version; CLUSTER=1)
	@if [ "$(CLUSTER)" = 1 ]; then scripts/ensure-haproxy.sh; fi
	$(PY) -m devtools.chaos $(if $(SHORT),--short) $(if $(filter 1,$(CLUSTER)),--cluster) \
		--command "make chaos$(if $(SHORT), SHORT=1)$(if $(filter 1,$(CLUSTER)), CLUSTER=1)" \
		$(if $(RESULT),--result $(RESULT))

# The soak (devtools/soak): an open-loop load at a fraction of a capacity measured first, deal
# after deal (start, sell out, flush), with payments, failed payments and expiries, sampled
# every few seconds (RSS, table sizes, outbox, consumer lag, Redis, p50/p99); fails unless
# every judged series is flat and every deal's checks hold. Report in reports/soak-*/.
# Its own processes on a free port; `make soak DURATION=10m SOAK_ARGS="--rate 100"`;
# RESULT=docs/scenarios/results/<name>.json: its figures (no samples) as a committed result.
SOAK_ARGS ?=
SOAK_DURATION = $(if $(filter command line environment,$(origin DURATION)),$(DURATION),30m)
.PHONY: soak
soak: venv infra-up ## a long steady load, deal after deal; fails if memory, backlogs or latency grow (DURATION=30m)
	$(PY) -m hotdeal_core.db.migrate
	$(PY) -m devtools.soak --duration $(SOAK_DURATION) $(SOAK_ARGS) \
		--command "make soak DURATION=$(SOAK_DURATION)$(if $(SOAK_ARGS), SOAK_ARGS=\"$(SOAK_ARGS)\")" \
		$(if $(RESULT),--result $(RESULT))

# The runtime image's lock files (requirements/*.lock, installed by the Dockerfile), refreshed
# from pyproject.toml in a fresh venv; commit them.
.PHONY: lock
lock: ## refresh requirements/*.lock from pyproject.toml
	scripts/lock-requirements.sh
