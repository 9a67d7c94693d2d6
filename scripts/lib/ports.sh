# shellcheck shell=bash
# The default ports of the local services, for scripts/*.sh and the Makefile (which reads
# these lines); hotdeal_core/settings.py states the app's (tests/tooling/test_ports.py keeps them
# equal). All below the kernel's ephemeral range (32768-60999): no client's source port can
# take one. The environment overrides each; lists take commas or spaces.
: "${HOTDEAL_PG_PORT:=15432}"
: "${HOTDEAL_REDIS_PORT:=16379}"
: "${HOTDEAL_KAFKA_PORT:=19092}"
: "${HOTDEAL_KAFKA_CONTROLLER_PORT:=19093}"
# A Redis Cluster's nine nodes from this port on; each one's cluster bus is 10000 below.
: "${HOTDEAL_REDIS_CLUSTER_PORT:=17001}"
# The Redis Cluster of `make test-cluster` (never the app's of `make up CLUSTER=1`).
: "${REDIS_CLUSTER_TEST_PORT:=17101}"
: "${HOTDEAL_KAFKA_CLUSTER_PORTS:=19192,19193,19194}"
: "${HOTDEAL_KAFKA_CLUSTER_CONTROLLER_PORTS:=19195,19196,19197}"
