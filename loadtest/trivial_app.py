"""The smallest FastAPI app: measures this machine's Python HTTP ceiling with the same
harness as the order API (`HOTDEAL_TARGET=noop` points the swarm's buy task at it).

    .venv/bin/python -m loadtest.trivial_app     # the API's server settings: ORDER_API_SERVER,
                                                 # ORDER_API_WORKERS, ORDER_API_HOST/PORT
    .venv/bin/uvicorn loadtest.trivial_app:app --port 18123
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/noop", status_code=202)
async def noop(body: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


def main() -> None:
    from hotdeal_core.settings import load_settings
    from order_api.servers import serve, server_from_env

    settings = load_settings()
    serve(server_from_env(), "loadtest.trivial_app:app", lambda: app,
          host=settings.order_api_host, port=settings.order_api_port,
          workers=settings.order_api_workers, backlog=settings.order_api_backlog,
          loop=settings.order_api_loop)


if __name__ == "__main__":
    main()
