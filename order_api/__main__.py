"""`python -m order_api`: serve the API with uvicorn (settings read once, here)."""

from __future__ import annotations

import logging

import uvicorn

from hotdeal_core.settings import InsecureSecrets, load_settings, parse_command_line
from order_api.app import create_app


def main() -> None:
    parse_command_line("python -m order_api",
                       "The hotdeal order API (HTTP): reserves stock, records PENDING orders "
                       "and payments. Stops gracefully on SIGTERM.")
    settings = load_settings()
    try:
        settings.require_real_secrets()
    except InsecureSecrets as exc:
        raise SystemExit(f"hotdeal: refusing to start: {exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.order_api_workers > 1:
        uvicorn.run("order_api.asgi:app", host=settings.order_api_host,
                    port=settings.order_api_port, workers=settings.order_api_workers,
                    log_level="warning", timeout_graceful_shutdown=10)
    else:
        uvicorn.run(create_app(settings), host=settings.order_api_host,
                    port=settings.order_api_port, log_level="warning",
                    timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
