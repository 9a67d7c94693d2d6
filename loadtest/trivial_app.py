"""The smallest FastAPI app: this machine's Python HTTP ceiling under the order API's harness
and server settings (`python -m loadtest.trivial_app`; `HOTDEAL_TARGET=noop` points the swarm
at it)."""

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
