"""`python -m stock_worker`: run until SIGTERM/SIGINT (graceful shutdown)."""

from hotdeal_core.bootstrap.consumer_process import run_consumer
from stock_worker.app import create_app

if __name__ == "__main__":
    run_consumer(create_app, "python -m stock_worker",
                 "The hotdeal stock worker: settles orders from payments.v1 and "
                 "order-requests.v1, releases stock, expires reservations. Stops gracefully "
                 "on SIGTERM.")
