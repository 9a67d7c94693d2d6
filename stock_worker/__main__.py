"""`python -m stock_worker`: run until SIGTERM/SIGINT (graceful: in-flight messages finish,
unfinished ones stay uncommitted and are redelivered)."""

from __future__ import annotations

import asyncio
import logging

from hotdeal_core.settings import load_settings
from stock_worker.app import create_app


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    asyncio.run(create_app(settings).run())


if __name__ == "__main__":
    main()
