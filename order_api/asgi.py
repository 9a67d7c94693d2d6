"""ASGI entry imported by each worker process (multi-worker uvicorn, granian): each reads
the settings once and builds its own app."""

from hotdeal_core.settings import load_settings
from order_api.app import create_app
from order_api.servers import configure_logging

settings = load_settings()
configure_logging(settings)  # a spawned worker inherits no logging set-up
app = create_app(settings)
