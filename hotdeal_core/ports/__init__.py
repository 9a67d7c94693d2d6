"""Ports: what the use cases need from Postgres.
Adapters in hotdeal_core/db/, fakes in tests/fakes/."""
