"""`python -m reconciler`: run until SIGTERM/SIGINT (a flush in progress finishes first)."""

from hotdeal_core.bootstrap.consumer_process import run_consumer
from reconciler.app import create_app

if __name__ == "__main__":
    run_consumer(create_app, "python -m reconciler",
                 "The hotdeal reconciler: flushes ended deals back to Postgres, audits them, "
                 "ends deals whose duration is over, rebuilds lost Redis state, releases "
                 "orphan reservations. Stops gracefully on SIGTERM.")
