"""ASGI entry for multi-worker uvicorn (each worker process reads the settings once)."""

from hotdeal_core.settings import load_settings
from order_api.app import create_app

app = create_app(load_settings())
