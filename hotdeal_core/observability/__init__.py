"""What an operator sees: Prometheus metrics (`metrics`, `exposition`, `server`) and the
logging set-up every process shares (`logs`). docs/observability.md lists the metrics."""
