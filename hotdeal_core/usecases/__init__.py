"""Use cases: every entry point (HTTP route, Kafka subscriber, CLI command) calls these."""
