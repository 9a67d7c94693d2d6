"""Developer tooling: running the three processes locally (make up/down, e2e tests, demo)."""
