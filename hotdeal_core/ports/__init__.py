"""Ports: what the use cases need from Postgres (adapters in hotdeal_core/db/, fakes in tests/fakes/)."""
