"""The smallest FastAPI app: measures this machine's Python HTTP ceiling with the same
harness as the order API (`HOTDEAL_TARGET=noop` points the swarm's buy task at it).

    .venv/bin/uvicorn loadtest.trivial_app:app --port 58123
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/noop", status_code=202)
async def noop(body: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}
