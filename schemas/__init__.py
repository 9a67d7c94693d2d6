"""Wire contracts only: pydantic models of the HTTP API and of every event on Kafka."""
