"""`python -m stock_worker`: run until SIGTERM/SIGINT (graceful shutdown)."""

from hotdeal_core.service import run_consumer
from stock_worker.app import create_app

if __name__ == "__main__":
    run_consumer(create_app)
