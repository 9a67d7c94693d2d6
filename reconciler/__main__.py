"""`python -m reconciler`: run until SIGTERM/SIGINT (a flush in progress finishes first)."""

from hotdeal_core.service import run_consumer
from reconciler.app import create_app

if __name__ == "__main__":
    run_consumer(create_app)
