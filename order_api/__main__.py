"""`python -m order_api`: serve the API (settings read once, here) under uvicorn or granian
(ORDER_API_SERVER; see order_api/servers.py)."""

from __future__ import annotations

from hotdeal_core.settings import InsecureSecrets, load_settings, parse_command_line
from order_api.app import create_app
from order_api.servers import SERVERS, configure_logging, serve


def main() -> None:
    parse_command_line("python -m order_api",
                       "The hotdeal order API (HTTP): reserves stock, records PENDING orders "
                       "and payments. Stops gracefully on SIGTERM. ORDER_API_SERVER picks the "
                       f"HTTP server ({' | '.join(SERVERS)}).")
    settings = load_settings()
    try:
        settings.require_real_secrets()
    except InsecureSecrets as exc:
        raise SystemExit(f"hotdeal: refusing to start: {exc}") from None
    configure_logging(settings)
    serve(settings.order_api_server, "order_api.asgi:app", lambda: create_app(settings),
          host=settings.order_api_host, port=settings.order_api_port,
          workers=settings.order_api_workers, backlog=settings.order_api_backlog,
          loop=settings.order_api_loop)


if __name__ == "__main__":
    main()
